"""The per-guild options of the TOML file, seen by a d-zone client."""

from __future__ import annotations

from discord_world import (
    ALICE,
    BOB,
    BOT,
    CAROL,
    DAVE,
    GENERAL,
    LOUNGE,
    RANDOM,
    ROBOT,
    WORKSHOP,
    discord_dback,
)

from dback_core.testing import Client

LOUNGE_OPTIONS = f"""
[guilds.{LOUNGE}]
alias = "The Lounge"
short_id = "lounge"
default = true
"""


async def test_alias_short_id_and_default(fake, monkeypatch, tmp_path):
    async with discord_dback(fake, monkeypatch, tmp_path, LOUNGE_OPTIONS) as server:
        async with Client(server) as client:
            join = await client.join(None)
            by_short_id = await client.join("lounge")
    entry = client.server_list[str(LOUNGE)]
    assert entry == {"id": "lounge", "name": "The Lounge", "passworded": False, "default": True}
    assert not client.server_list[str(WORKSHOP)].get("default")
    assert join["data"]["serverName"] == "The Lounge"
    assert by_short_id["data"]["users"] == join["data"]["users"]


async def test_disabled_guild_is_not_listed(fake, monkeypatch, tmp_path):
    config = f"[guilds.{WORKSHOP}]\nenabled = false\n"
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        async with Client(server) as client:
            refused = await client.join(str(WORKSHOP))
    assert set(client.server_list) == {str(LOUNGE)}
    assert refused["type"] == "error"


async def test_ignored_users_and_bots_are_hidden_with_their_messages(fake, monkeypatch, tmp_path):
    config = f"[guilds.{LOUNGE}]\nignore_users = [{BOB}]\nignore_bots = true\n"
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        async with Client(server) as client:
            join = await client.join(str(LOUNGE))
            await fake.say(LOUNGE, GENERAL, BOB, "ignored person")
            await fake.say(LOUNGE, GENERAL, ROBOT, "ignored bot")
            await fake.set_status(LOUNGE, BOB, "online")
            await fake.set_status(LOUNGE, ROBOT, "idle")
            await fake.set_status(LOUNGE, CAROL, "online")
            await fake.say(LOUNGE, GENERAL, ALICE, "heard")
            presence = await client.recv_type("presence")
            message = await client.recv_type("message")
    assert set(join["data"]["users"]) == {str(ALICE), str(CAROL), str(DAVE)}
    assert str(BOT) not in join["data"]["users"]
    assert presence["data"]["uid"] == str(CAROL)
    assert message["data"]["message"] == "heard"


async def test_ignored_channels_are_not_heard(fake, monkeypatch, tmp_path):
    config = f"[guilds.{LOUNGE}]\nignore_channels = [{RANDOM}]\n"
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            await fake.say(LOUNGE, RANDOM, ALICE, "off topic")
            await fake.say(LOUNGE, GENERAL, ALICE, "on topic")
            message = await client.recv_type("message")
    assert message["data"] == {"uid": str(ALICE), "message": "on topic", "channel": str(GENERAL)}


async def test_listen_channels_are_the_only_ones_heard(fake, monkeypatch, tmp_path):
    config = f"[guilds.{LOUNGE}]\nlisten_channels = [{RANDOM}]\n"
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            await fake.say(LOUNGE, GENERAL, ALICE, "not listened to")
            await fake.say(LOUNGE, RANDOM, ALICE, "listened to")
            message = await client.recv_type("message")
    assert message["data"]["message"] == "listened to"


async def test_threads_are_heard_as_their_channel(fake, monkeypatch, tmp_path):
    fake.add_thread(LOUNGE, 503, GENERAL, "a thread")
    config = f"[guilds.{LOUNGE}]\nlisten_channels = [{GENERAL}]\n"
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            await fake.say(LOUNGE, RANDOM, ALICE, "not listened to")
            await fake.say(LOUNGE, 503, ALICE, "in the thread")
            message = await client.recv_type("message")
    assert message["data"] == {"uid": str(ALICE), "message": "in the thread", "channel": "503"}


async def test_hide_offline_lists_only_present_members(fake, monkeypatch, tmp_path):
    config = "[defaults]\nhide_offline = true\n"
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        async with Client(server) as client:
            join = await client.join(str(LOUNGE))
            await fake.set_status(LOUNGE, ALICE, "offline")
            gone = await client.recv_type("presence")
            await fake.set_status(LOUNGE, DAVE, "idle")
            arrived = await client.recv_type("presence")
            await fake.join_member(LOUNGE, 2002, "lurker")
            await fake.set_status(LOUNGE, CAROL, "idle")
            after_lurker = await client.recv_type("presence")
            rejoin = await client.join(str(LOUNGE))
    assert str(DAVE) not in join["data"]["users"]
    assert str(ALICE) in join["data"]["users"]
    assert gone["data"]["uid"] == str(ALICE) and gone["data"]["delete"] is True
    assert arrived["data"] == {
        "uid": str(DAVE),
        "username": "dave",
        "status": "idle",
        "roleColor": False,
    }
    assert after_lurker["data"]["uid"] == str(CAROL)
    assert str(ALICE) not in rejoin["data"]["users"] and str(DAVE) in rejoin["data"]["users"]
    assert "2002" not in rejoin["data"]["users"]


async def test_password_is_checked_by_the_core_and_never_listed(fake, monkeypatch, tmp_path):
    config = f'[guilds.{LOUNGE}]\npassword = "sesame"\n'
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        async with Client(server) as client:
            required = await client.join(str(LOUNGE))
            wrong = await client.join(str(LOUNGE), password="guess")
            right = await client.join(str(LOUNGE), password="sesame")
    assert client.server_list[str(LOUNGE)] == {
        "id": client.server_list[str(LOUNGE)]["id"],
        "name": "Lounge",
        "passworded": True,
        **({"default": True} if client.server_list[str(LOUNGE)].get("default") else {}),
    }
    assert "sesame" not in str(client.server_list)
    assert required["type"] == "error" and wrong["type"] == "error"
    assert right["type"] == "server-join"
