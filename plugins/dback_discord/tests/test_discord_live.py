"""End to end: real discord.py against the fake Discord, through dback, to a WebSocket client."""

from __future__ import annotations

from discord_world import (
    ALICE,
    BOB,
    BOT,
    CAROL,
    DAVE,
    GENERAL,
    LOUNGE,
    MOD,
    ROBOT,
    WORKSHOP,
    discord_dback,
)

from dback_core.testing import Client
from dback_discord.config import GuildOptions
from dback_discord.records import short_id


async def test_every_guild_of_the_bot_is_listed_with_a_stable_short_id(fake, monkeypatch, tmp_path):
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            listed = client.server_list
    assert set(listed) == {str(LOUNGE), str(WORKSHOP)}
    assert listed[str(LOUNGE)]["name"] == "Lounge"
    assert listed[str(LOUNGE)]["id"] == short_id(LOUNGE, GuildOptions())
    assert listed[str(LOUNGE)]["passworded"] is False
    assert len({entry["id"] for entry in listed.values()}) == 2
    assert sum(1 for entry in listed.values() if entry.get("default")) == 1
    assert "GET /api/v10/users/@me" in fake.requests


async def test_join_shows_members_with_status_and_top_role_colour(fake, monkeypatch, tmp_path):
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            join = await client.join(client.server_list[str(LOUNGE)]["id"])
    users = join["data"]["users"]
    assert join["data"]["serverName"] == "Lounge"
    assert users[str(ALICE)] == {
        "uid": str(ALICE),
        "username": "Alice",
        "status": "online",
        "roleColor": "#e74c3c",
    }
    assert (users[str(BOB)]["status"], users[str(BOB)]["roleColor"]) == ("idle", "#3498db")
    assert (users[str(CAROL)]["status"], users[str(CAROL)]["roleColor"]) == ("dnd", False)
    assert users[str(DAVE)]["status"] == "offline"
    assert set(users) == {str(uid) for uid in (ALICE, BOB, CAROL, DAVE, ROBOT, BOT)}


async def test_large_guilds_are_listed_in_full(fake, monkeypatch, tmp_path):
    """Discord sends only the online members of a large guild; the rest must be fetched."""
    for number in range(300):
        fake.add_member(WORKSHOP, 10_000 + number, f"member{number}")
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            join = await client.join(str(WORKSHOP))
    users = join["data"]["users"]
    assert fake.member_requests == 1
    assert len(users) == 303
    assert users["10299"] == {
        "uid": "10299",
        "username": "member299",
        "status": "offline",
        "roleColor": False,
    }
    assert users[str(ALICE)]["status"] == "online"


async def test_presence_changes_reach_the_viewer(fake, monkeypatch, tmp_path):
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            await fake.set_status(LOUNGE, DAVE, "online")
            frame = await client.recv_type("presence")
    assert frame["server"] == str(LOUNGE)
    assert frame["data"] == {
        "uid": str(DAVE),
        "username": "dave",
        "status": "online",
        "roleColor": False,
    }


async def test_members_joining_changing_and_leaving(fake, monkeypatch, tmp_path):
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            await fake.join_member(LOUNGE, 2001, "newcomer")
            joined = await client.recv_type("presence")
            await fake.update_member(LOUNGE, CAROL, nick="Caz", roles=[MOD])
            changed = await client.recv_type("presence")
            await fake.remove_member(LOUNGE, BOB)
            left = await client.recv_type("presence")
            rejoin = await client.join(str(LOUNGE))
    assert joined["data"] == {
        "uid": "2001",
        "username": "newcomer",
        "status": "offline",
        "roleColor": False,
    }
    assert changed["data"]["username"] == "Caz"
    assert changed["data"]["roleColor"] == "#3498db"
    assert changed["data"]["status"] == "dnd"
    assert left["data"]["uid"] == str(BOB) and left["data"]["delete"] is True
    users = rejoin["data"]["users"]
    assert "2001" in users and str(BOB) not in users and users[str(CAROL)]["username"] == "Caz"


async def test_chat_messages_reach_the_viewer(fake, monkeypatch, tmp_path):
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            await fake.say(LOUNGE, GENERAL, ALICE, "hello d-zone")
            frame = await client.recv_type("message")
    assert frame["server"] == str(LOUNGE)
    assert frame["data"] == {"uid": str(ALICE), "message": "hello d-zone", "channel": str(GENERAL)}


async def test_guilds_joined_renamed_and_left_update_the_server_list(fake, monkeypatch, tmp_path):
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            guild = fake.add_guild(333, "Attic")
            await fake.join_guild(guild)
            joined = await client.recv_type("server-list")
            await fake.rename_guild(WORKSHOP, "Studio")
            renamed = await client.recv_type("server-list")
            await fake.leave_guild(LOUNGE)
            left = await client.recv_type("server-list")
    assert set(joined["data"]) == {str(LOUNGE), str(WORKSHOP), "333"}
    assert renamed["data"][str(WORKSHOP)]["name"] == "Studio"
    assert set(left["data"]) == {str(WORKSHOP), "333"}
