"""Role changes recolour exactly the members who have the role, with presence frames,
never a whole new world, and bursts of changes are coalesced."""

from __future__ import annotations

import asyncio

import pytest
from discord_world import ADMIN, ALICE, BOB, LOUNGE, MOD, RED, discord_dback

from dback_core.testing import Client

GREEN, PURPLE = 0x2ECC71, 0x9B59B6
#: [bot] keys (they follow FAST_BOT): colour frames at most every 0.2 s per member.
COALESCE = "role_interval = 0.2\n"


async def frames_until(client: Client, done, timeout: float = 5.0) -> list[dict]:
    """Every frame until ``done(frame)`` is true for one, that one included."""
    frames: list[dict] = []
    while not frames or not done(frames[-1]):
        frames.append(await client.recv(timeout))
    return frames


def colour_of(uid: int, colour: str):
    def done(frame: dict) -> bool:
        data = frame.get("data", {})
        return frame["type"] == "presence" and (data.get("uid"), data.get("roleColor")) == (
            str(uid),
            colour,
        )

    return done


async def test_a_colour_change_sends_presence_frames_for_the_roles_members_only(
    fake, monkeypatch, tmp_path
):
    async with discord_dback(fake, monkeypatch, tmp_path, COALESCE) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            await fake.recolor_role(LOUNGE, MOD, GREEN)
            frames = await frames_until(client, colour_of(BOB, "#2ecc71"))
            await fake.recolor_role(LOUNGE, ADMIN, PURPLE)
            more = await frames_until(client, colour_of(ALICE, "#9b59b6"))
    every = frames + more
    assert {frame["type"] for frame in every} == {"presence"}
    # Alice has both roles; Admin is higher, so Mod's colour change leaves her red.
    alice = [f for f in every if f["data"]["uid"] == str(ALICE)]
    assert all(f["data"]["roleColor"] in (f"#{RED:06x}", "#9b59b6") for f in alice)
    assert {f["data"]["uid"] for f in every} <= {str(ALICE), str(BOB)}


@pytest.mark.slow
async def test_deleting_or_reordering_a_role_recolours_its_members(fake, monkeypatch, tmp_path):
    async with discord_dback(fake, monkeypatch, tmp_path, COALESCE) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            await fake.move_role(LOUNGE, MOD, 5)  # Mod above Admin: Alice turns blue
            moved = await frames_until(client, colour_of(ALICE, "#3498db"))
            await fake.move_role(LOUNGE, MOD, 1)
            await frames_until(client, colour_of(ALICE, f"#{RED:06x}"))
            await fake.delete_role(LOUNGE, ADMIN)  # Alice keeps only Mod: blue again
            deleted = await frames_until(client, colour_of(ALICE, "#3498db"))
            await fake.create_role(LOUNGE, 303, "New", color=GREEN, position=9)
            await fake.update_member(LOUNGE, BOB, nick=None, roles=[MOD, 303])
            created = await frames_until(client, colour_of(BOB, "#2ecc71"))
    assert {frame["type"] for frame in moved + deleted + created} == {"presence"}


async def test_a_burst_of_recolours_is_coalesced_and_the_last_colour_arrives(
    fake, monkeypatch, tmp_path
):
    colours = [0x100000 + step for step in range(20)]
    async with discord_dback(fake, monkeypatch, tmp_path, COALESCE) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            started = asyncio.get_running_loop().time()
            for colour in colours:
                await fake.recolor_role(LOUNGE, MOD, colour)
                await asyncio.sleep(0.02)
            frames = await frames_until(client, colour_of(BOB, f"#{colours[-1]:06x}"))
            elapsed = asyncio.get_running_loop().time() - started
    bob = [f for f in frames if f["type"] == "presence" and f["data"]["uid"] == str(BOB)]
    # One frame per member per 0.2 s interval at most, whatever the number of changes.
    assert len(bob) <= int(elapsed / 0.2) + 1 < len(colours)
    assert bob[-1]["data"]["roleColor"] == f"#{colours[-1]:06x}"
