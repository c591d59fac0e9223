"""Every rule of the d-zone wire protocol, against a real server and real sockets."""

from __future__ import annotations

import asyncio
import json

import pytest

from dback_core.plugin.events import Message, Presence
from dback_core.testing import Client
from dback_core.wire import protocol

DEFAULT = "232769614004748288"
DOCS = "482241773318701056"
OAUTH = "123456789012345678"


async def test_server_list_is_the_first_frame_and_well_formed(mock_server):
    async with Client(mock_server) as client:
        servers = client.server_list
    assert set(servers) == {DEFAULT, DOCS, OAUTH, "987654321098765432"}
    for entry in servers.values():
        assert isinstance(entry["id"], str) and isinstance(entry["name"], str)
        assert isinstance(entry["passworded"], bool)
        assert "password" not in entry
    assert servers[OAUTH]["passworded"] is True
    assert [key for key, entry in servers.items() if entry.get("default")] == [DEFAULT]


@pytest.mark.parametrize("server", [None, "", "   ", "default"])
async def test_null_missing_blank_and_default_mean_the_default_guild(mock_server, server):
    async with Client(mock_server) as client:
        join = await client.join(server)
    assert join["type"] == "server-join"
    # The guild joined, by its short id: the client marks it in its menu and links to it.
    assert join["data"]["request"] == {"server": "dworld"}
    assert join["data"]["serverName"] == "D-World"


async def test_connect_without_data_field_joins_default(mock_server):
    async with Client(mock_server) as client:
        await client.send({"type": "connect"})
        join = await client.recv_type("server-join", "error")
    assert join["type"] == "server-join"
    assert join["data"]["request"]["server"] == "dworld"


async def test_a_top_level_server_in_connect_is_honoured_not_sent_to_the_default(mock_server):
    """``{"type": "connect", "server": "docs"}`` (server outside ``data``) joins Docs."""
    async with Client(mock_server) as client:
        await client.send({"type": "connect", "server": "docs"})
        join = await client.recv_type("server-join", "error")
        assert join["type"] == "server-join", join
        assert join["data"]["serverName"] == "Docs (WIP)"
        assert join["data"]["request"] == {"server": "docs"}
        await client.send({"type": "connect", "server": "nowhere"})
        refused = await client.recv_type("server-join", "error")
        assert refused["type"] == "error"
        await client.send({"type": "connect", "server": "docs", "data": {"server": "repos"}})
        inside_wins = await client.recv_type("server-join", "error")
        assert inside_wins["data"]["serverName"] == "My Repos"


async def test_join_by_short_id_and_by_snowflake(mock_server):
    async with Client(mock_server) as client:
        by_id = await client.join("docs")
        by_key = await client.join(DOCS)
    assert by_id["data"]["request"] == {"server": "docs"}
    assert by_key["data"]["request"] == {"server": "docs"}
    assert by_id["data"]["users"] == by_key["data"]["users"]


async def test_join_users_have_the_client_shape(mock_server):
    async with Client(mock_server) as client:
        join = await client.join("default")
    users = join["data"]["users"]
    assert len(users) == 40
    for uid, user in users.items():
        assert user["uid"] == uid and isinstance(uid, str)
        assert isinstance(user["username"], str) and user["username"]
        assert user["status"] in {"online", "idle", "dnd", "offline"}
        assert user["roleColor"] is False or (
            isinstance(user["roleColor"], str) and len(user["roleColor"]) == 7
        )


async def test_unknown_guild_gets_the_d_zone_error_text(mock_server):
    async with Client(mock_server) as client:
        answer = await client.join("no-such-guild")
    assert answer == {"type": "error", "data": {"message": protocol.UNKNOWN_SERVER}}


async def test_presence_and_message_pushes_carry_what_the_client_needs(mock_server):
    async with Client(mock_server) as client:
        join = await client.join("default")
        presence = await client.recv_type("presence")
        message = await client.recv_type("message")
    assert presence["server"] == DEFAULT
    data = presence["data"]
    assert set(data) >= {"uid", "status", "username", "roleColor"}
    assert data["uid"] in join["data"]["users"] or data["username"]
    assert message["server"] == DEFAULT
    assert set(message["data"]) == {"uid", "message", "channel"}
    assert message["data"]["message"]


async def test_passworded_guild_refuses_without_and_with_wrong_password(mock_server):
    async with Client(mock_server) as client:
        missing = await client.join("oauth")
        wrong = await client.join("oauth", password="guess")
    assert missing["type"] == "error"
    assert missing["data"]["message"] == protocol.LOGIN_REQUIRED
    assert wrong["type"] == "error"
    assert wrong["data"]["message"] == protocol.LOGIN_REFUSED


async def test_passworded_guild_admits_the_right_password_and_never_echoes_it(mock_server):
    async with Client(mock_server) as client:
        join = await client.join("oauth", password="sesame")
    assert join["type"] == "server-join"
    assert join["data"]["request"] == {"server": "oauth"}
    assert "sesame" not in json.dumps(join)


async def test_get_user_data_answers_user_data_after_server_list(mock_server):
    async with Client(mock_server) as client:
        await client.send({"type": "get_user_data", "serverId": DEFAULT})
        answer = await client.recv_type("user_data", "error")
        join = await client.join("default")
    assert answer["serverId"] == DEFAULT
    assert set(answer["users"]) == set(join["data"]["users"])


async def test_get_user_data_obeys_the_access_rules_of_connect(mock_server):
    async with Client(mock_server) as client:
        await client.send({"type": "get_user_data", "serverId": OAUTH})
        refused = await client.recv_type("user_data", "error")
        await client.join("oauth", password="sesame")
        await client.send({"type": "get_user_data", "serverId": OAUTH})
        allowed = await client.recv_type("user_data", "error")
    assert refused["type"] == "error"
    assert allowed["type"] == "user_data" and allowed["users"]


async def test_get_user_data_for_unknown_guild_is_an_error(mock_server):
    async with Client(mock_server) as client:
        await client.send({"type": "get_user_data", "serverId": "nope"})
        answer = await client.recv_type("user_data", "error")
    assert answer["data"]["message"] == protocol.UNKNOWN_SERVER


@pytest.mark.slow
async def test_switching_guild_moves_the_connection(mock_server):
    async with Client(mock_server) as client:
        await client.join("default")
        await client.join("docs")
        seen = set()
        for _ in range(20):
            frame = await client.recv_type("presence", "message")
            seen.add(frame["server"])
    assert seen == {DOCS}
    assert mock_server.fanout.by_guild.get(DEFAULT) is None


@pytest.mark.slow
async def test_a_viewer_of_one_guild_never_receives_another_guilds_events(mock_server):
    async with Client(mock_server) as viewer_a, Client(mock_server) as viewer_b:
        await viewer_a.join("default")
        await viewer_b.join("repos")
        frames_a = [await viewer_a.recv_type("presence", "message") for _ in range(30)]
        frames_b = [await viewer_b.recv_type("presence", "message") for _ in range(30)]
    assert {frame["server"] for frame in frames_a} == {DEFAULT}
    assert {frame["server"] for frame in frames_b} == {"987654321098765432"}


@pytest.mark.slow
async def test_two_viewers_of_one_guild_see_identical_events(mock_server):
    async with Client(mock_server) as first, Client(mock_server) as second:
        await first.join("default")
        await second.join("default")
        marker = Message(DEFAULT, next(iter(mock_server.directory.guilds[DEFAULT].users)), "mark")
        await mock_server.publish(marker)
        await first.wait_for(lambda f: f.get("data", {}).get("message") == "mark")
        await second.wait_for(lambda f: f.get("data", {}).get("message") == "mark")
        stream_a = [await first.recv_type("presence", "message") for _ in range(25)]
        stream_b = [await second.recv_type("presence", "message") for _ in range(25)]
    assert stream_a == stream_b


async def test_presence_for_a_new_member_creates_and_delete_removes(mock_server):
    async with Client(mock_server) as client:
        await client.join("default")
        await mock_server.publish(Presence(DEFAULT, "999", "online", "newcomer", "#abcdef"))
        created = await client.wait_for(lambda f: f.get("data", {}).get("uid") == "999")
        await mock_server.publish(Presence(DEFAULT, "999", "offline", delete=True))
        deleted = await client.wait_for(lambda f: f.get("data", {}).get("uid") == "999")
        rejoin = await client.join("default")
    assert created["data"] == {
        "uid": "999",
        "username": "newcomer",
        "status": "online",
        "roleColor": "#abcdef",
    }
    assert deleted["data"]["delete"] is True and deleted["data"]["username"] == "newcomer"
    assert "999" not in rejoin["data"]["users"]


async def test_joins_are_served_from_memory_not_from_the_providers(mock_server):
    calls = []
    original = mock_server.hooks.get_user_data

    async def counting(server_id):
        calls.append(server_id)
        return await original(server_id)

    mock_server.hooks.get_user_data = counting
    async with Client(mock_server) as client:
        for _ in range(5):
            await client.join("repos")
    await asyncio.gather(*(_join_once(mock_server) for _ in range(10)))
    assert calls == ["987654321098765432"]


async def _join_once(server):
    async with Client(server) as client:
        assert (await client.join("repos"))["type"] == "server-join"
