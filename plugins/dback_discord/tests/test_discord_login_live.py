"""Discord login is checked while the viewer watches, not only at the door: a member kicked
or banned from a members-only guild is taken out of it at once, and a token Discord no
longer accepts is refused at the next ``connect``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from discord_world import ALICE, BOB, CAROL, GENERAL, LOUNGE, WORKSHOP, discord_dback

from dback_core.testing import Client
from dback_discord.live_logins import REMOVED

log = logging.getLogger(__name__)

LOGIN_CONFIG = f"[guilds.{LOUNGE}]\ndiscord_login = true\n"
ALICE_TOKEN, BOB_TOKEN = "alice-token-1234", "bob-token-5678"


def members_with_tokens(fake) -> None:
    fake.oauth_users = {ALICE_TOKEN: [LOUNGE, WORKSHOP], BOB_TOKEN: [LOUNGE]}
    fake.oauth_ids = {ALICE_TOKEN: ALICE, BOB_TOKEN: BOB}


@contextlib.asynccontextmanager
async def carol_keeps_changing(fake, every: float = 0.01) -> AsyncIterator[None]:
    """Presences and chat of the guild flow all the time, as in a busy guild."""

    stop = asyncio.Event()

    async def change() -> None:
        number = 0
        while not stop.is_set():
            await fake.set_status(LOUNGE, CAROL, ("online", "idle", "dnd")[number % 3])
            if number % 5 == 0:
                await fake.say(LOUNGE, GENERAL, CAROL, f"message {number}")
            number += 1
            await asyncio.sleep(every)

    task = asyncio.create_task(change())
    try:
        yield
    finally:
        stop.set()
        await task


async def frames_until_refused(viewer: Client) -> list[dict[str, Any]]:
    """Everything queued for ``viewer`` before now, up to the refusal of a request for the
    guild it was taken out of (the server answers requests in order)."""
    await viewer.send({"type": "get_user_data", "serverId": str(LOUNGE)})
    frames = [await viewer.recv()]
    while frames[-1]["type"] != "error":
        frames.append(await viewer.recv())
    return frames


async def watch_until_told(viewer: Client) -> tuple[float, int]:
    """Read frames until the ``error``; when it came, and how many of the guild's presence
    and chat frames came before it."""
    guild_frames = 0
    while True:
        frame = await viewer.recv(timeout=10)
        if frame["type"] == "error":
            assert frame["data"]["message"] == REMOVED
            return time.monotonic(), guild_frames
        guild_frames += frame["type"] in ("presence", "message")


@pytest.mark.slow
async def test_a_member_kicked_while_watching_is_taken_out_at_once(fake, monkeypatch, tmp_path):
    """Measures how long a kicked viewer keeps receiving the guild's frames: from the kick
    leaving Discord to the ``error`` (the last frame of the guild it gets), ten kicks."""
    members_with_tokens(fake)
    delays = []
    config = LOGIN_CONFIG + "[login]\nrate = 100\nburst = 100\n"  # 10 logins in a row
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        async with Client(server) as bob, carol_keeps_changing(fake):
            assert (await bob.join(str(LOUNGE), discordToken=BOB_TOKEN))["type"] == "server-join"
            for round_ in range(10):
                if round_:
                    await fake.join_member(LOUNGE, ALICE, "alice", status="online")
                    fake.oauth_users[ALICE_TOKEN].append(LOUNGE)
                async with Client(server) as alice:
                    joined = await alice.join(str(LOUNGE), discordToken=ALICE_TOKEN)
                    assert joined["type"] == "server-join", joined
                    await alice.recv_type("presence")  # the guild is live for her
                    told = asyncio.create_task(watch_until_told(alice))
                    kicked_at = time.monotonic()
                    await fake.remove_member(LOUNGE, ALICE)
                    told_at, _ = await told
                    delays.append(told_at - kicked_at)
                    await asyncio.sleep(0.2)  # the guild goes on meanwhile
                    after = await frames_until_refused(alice)
                    again = await alice.join(str(LOUNGE), discordToken=ALICE_TOKEN)
                    elsewhere = await alice.join(str(WORKSHOP))
            # Read everything bob was sent (a client that leaves 16 frames unread stops
            # reading its socket, and then its close takes the 10 s close timeout).
            bob_still = [frame for frame in await bob.pending(str(LOUNGE)) if "server" in frame]
    log.info(
        "kicked viewer kept receiving frames for %.1f ms median, %.1f ms at most (10 kicks)",
        statistics.median(delays) * 1000,
        max(delays) * 1000,
    )
    assert [frame["type"] for frame in after] == ["error"]  # nothing of the guild after
    assert again["type"] == "error"  # Discord no longer lists the guild for her token
    assert elsewhere["type"] == "server-join"
    assert bob_still and {frame["server"] for frame in bob_still} == {str(LOUNGE)}


@pytest.mark.parametrize("bot", ["", "shards = 2\n"], ids=["one", "sharded"])
async def test_a_banned_member_is_taken_out_at_the_ban(fake, monkeypatch, tmp_path, bot):
    """GUILD_BAN_ADD alone (the removal still on its way) takes the viewer out; the same
    through discord.py's sharded client."""
    members_with_tokens(fake)
    async with discord_dback(fake, monkeypatch, tmp_path, bot + LOGIN_CONFIG) as server:
        async with Client(server) as alice, Client(server) as bob, carol_keeps_changing(fake):
            await bob.join(str(LOUNGE), discordToken=BOB_TOKEN)
            assert (await alice.join(str(LOUNGE), discordToken=ALICE_TOKEN))["type"] == (
                "server-join"
            )
            told = asyncio.create_task(watch_until_told(alice))
            await fake.ban_member(LOUNGE, ALICE, remove=False)
            await told
            await asyncio.sleep(0.2)
            after = await frames_until_refused(alice)
            # Read everything bob was sent (a client that leaves 16 frames unread stops
            # reading its socket, and then its close takes the 10 s close timeout).
            bob_still = [frame for frame in await bob.pending(str(LOUNGE)) if "server" in frame]
    assert [frame["type"] for frame in after] == ["error"]
    assert bob_still and {frame["server"] for frame in bob_still} == {str(LOUNGE)}


async def test_a_kick_missed_while_the_bot_identified_again_is_found_in_the_new_list(
    fake, monkeypatch, tmp_path
):
    """The session was invalidated and the kick happened before the bot identified again,
    so no GUILD_MEMBER_REMOVE ever reaches it: the fresh member list shows the departure."""
    members_with_tokens(fake)
    async with discord_dback(fake, monkeypatch, tmp_path, LOGIN_CONFIG) as server:
        async with Client(server) as alice, Client(server) as bob:
            await bob.join(str(LOUNGE), discordToken=BOB_TOKEN)
            assert (await alice.join(str(LOUNGE), discordToken=ALICE_TOKEN))["type"] == (
                "server-join"
            )
            identifies = fake.identifies
            await fake.invalidate_sessions()
            await fake.remove_member(LOUNGE, ALICE)  # no session to tell
            told = await alice.recv_type("error", timeout=15)
            bob_frames = await bob.pending(str(LOUNGE))
    assert told["data"]["message"] == REMOVED
    assert fake.identifies > identifies
    assert "error" not in [frame["type"] for frame in bob_frames]


async def test_a_removal_drops_cached_admissions_so_the_next_connect_asks_discord(
    fake, monkeypatch, tmp_path
):
    """Admitted from the cache before; after the kick the cache is not trusted: Discord is
    asked, and says no. Rejoining the guild lets the member in again at once."""
    members_with_tokens(fake)
    async with discord_dback(fake, monkeypatch, tmp_path, LOGIN_CONFIG) as server:
        async with Client(server) as first:
            assert (await first.join(str(LOUNGE), discordToken=ALICE_TOKEN))["type"] == (
                "server-join"
            )
        await fake.remove_member(LOUNGE, ALICE)
        await fake.set_status(LOUNGE, CAROL, "idle")  # after the removal, in order
        async with Client(server) as watcher:
            await watcher.join(str(WORKSHOP))
            async with Client(server) as second:
                refused = await second.join(str(LOUNGE), discordToken=ALICE_TOKEN)
            await fake.join_member(LOUNGE, ALICE, "alice", status="online")
            fake.oauth_users[ALICE_TOKEN].append(LOUNGE)
            async with Client(server) as third:
                back = await third.join(str(LOUNGE), discordToken=ALICE_TOKEN)
    assert refused["type"] == "error" and back["type"] == "server-join"
    assert fake.oauth_requests.count("/users/@me/guilds") == 3


@pytest.mark.slow
async def test_a_check_under_way_when_the_member_is_kicked_does_not_admit(
    fake, monkeypatch, tmp_path
):
    """Discord listed the guild, then the kick arrived before its answer did: refused."""
    members_with_tokens(fake)
    fake.oauth_delay = 0.3
    async with discord_dback(fake, monkeypatch, tmp_path, LOGIN_CONFIG) as server:
        async with Client(server) as alice:
            joining = asyncio.create_task(alice.join(str(LOUNGE), discordToken=ALICE_TOKEN))
            while "/users/@me/guilds" not in fake.oauth_requests:
                await asyncio.sleep(0.01)
            await fake.remove_member(LOUNGE, ALICE)
            refused = await joining
            elsewhere = await alice.join(str(WORKSHOP))
    assert refused["type"] == "error" and elsewhere["type"] == "server-join"


async def test_a_token_discord_no_longer_accepts_is_refused_at_the_next_connect(
    fake, monkeypatch, tmp_path
):
    """The user deauthorised the application (no removal): the cached admission is checked
    with Discord at the next ``connect``, which refuses it."""
    members_with_tokens(fake)
    async with discord_dback(fake, monkeypatch, tmp_path, LOGIN_CONFIG) as server:
        async with Client(server) as first:
            admitted = await first.join(str(LOUNGE), discordToken=ALICE_TOKEN)
        del fake.oauth_users[ALICE_TOKEN]
        async with Client(server) as second:
            refused = await second.join(str(LOUNGE), discordToken=ALICE_TOKEN)
        async with Client(server) as third:
            refused_again = await third.join(str(LOUNGE), discordToken=ALICE_TOKEN)
    assert admitted["type"] == "server-join"
    assert refused["type"] == "error" and refused_again["type"] == "error"
    # The refusal is cached: the third connect did not ask Discord again.
    assert fake.oauth_requests.count("/users/@me") == 2


async def test_a_cached_admission_stands_while_discord_cannot_be_asked(fake, monkeypatch, tmp_path):
    """Discord failing at the confirmation is not a refusal of a token it accepted
    minutes ago: the cached admission stands (for at most ``admit_ttl``)."""
    members_with_tokens(fake)
    async with discord_dback(fake, monkeypatch, tmp_path, LOGIN_CONFIG) as server:
        async with Client(server) as first:
            admitted = await first.join(str(LOUNGE), discordToken=ALICE_TOKEN)
        fake.oauth_outage = 502
        async with Client(server) as second:
            still = await second.join(str(LOUNGE), discordToken=ALICE_TOKEN)
        async with Client(server) as third:
            new_token = await third.join(str(LOUNGE), discordToken=BOB_TOKEN)
    assert admitted["type"] == "server-join" and still["type"] == "server-join"
    assert new_token["type"] == "error"  # never checked: never admitted
