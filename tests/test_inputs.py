"""Input limits: every text a client sends is checked, every text a plugin provides is cut to
its limit, and both are reported without a traceback (dback_core/wire/inputs.py).
"""

from __future__ import annotations

import logging

import pytest

from dback_core import hookimpl
from dback_core.plugin.events import Message, Presence, Refresh
from dback_core.testing import Client, running_server
from dback_core.wire import inputs

QUIET = {"DBACK_PLUGINS": ""}
LONE_SURROGATE = "\\ud800"  # as JSON escapes it: decodes, but cannot be encoded as UTF-8


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"connect","data":{"server":"oauth","password":"pw' + LONE_SURROGATE + '"}}',
        '{"type":"connect","data":{"server":"' + LONE_SURROGATE + '"}}',
        '{"type":"connect","data":{"server":"oauth","discordToken":"t",'
        '"discordUser":{"' + LONE_SURROGATE + '":1}}}',
        '{"type":"' + LONE_SURROGATE + '"}',
        '{"type":"get_user_data","serverId":"' + LONE_SURROGATE + '"}',
    ],
    ids=["password", "server", "discordUser key", "type", "serverId"],
)
async def test_text_that_is_not_unicode_gets_an_error_and_the_connection_lives(
    mock_server, frame, caplog
):
    async with Client(mock_server) as client:
        await client.send(frame)
        answer = await client.recv_type("error")
        joined = await client.join("default")
    assert answer["data"]["message"] == "Every text must be valid Unicode."
    assert joined["type"] == "server-join"
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("password", "p" * (inputs.CLIENT_FIELD_CHARS["password"] + 1)),
        ("discordToken", "t" * (inputs.CLIENT_FIELD_CHARS["discordToken"] + 1)),
        ("server", "s" * (inputs.CLIENT_FIELD_CHARS["server"] + 1)),
        ("discordUser", {"username": "u" * inputs.DISCORD_USER_CHARS}),
    ],
)
async def test_client_fields_over_their_limit_get_an_error(field, value):
    async with running_server(max_frame_size=16384) as server, Client(server) as client:
        await client.send({"type": "connect", "data": {"server": "oauth", field: value}})
        answer = await client.recv_type("server-join", "error")
        joined = await client.join("default")
    assert answer["type"] == "error"
    assert answer["data"]["message"].startswith(f"'{field}' is longer than")
    assert joined["type"] == "server-join"


async def test_a_server_id_over_its_limit_in_get_user_data_gets_an_error(mock_server):
    async with Client(mock_server) as client:
        await client.send({"type": "get_user_data", "serverId": "9" * 101})
        answer = await client.recv_type("error", "user_data")
    assert answer["data"]["message"] == "'serverId' is longer than 100 characters."


class Provider:
    """Guild "1" with whatever members the test sets."""

    def __init__(self, users: dict, name: str = "One") -> None:
        self.users = users
        self.name = name

    @hookimpl
    def get_server_data(self):
        return {"1": {"id": "one", "name": self.name}}

    @hookimpl
    def get_user_data(self, server_id):
        return dict(self.users)


def warnings_from(caplog, plugin: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and f"plugin {plugin}:" in record.getMessage()
    ]


async def test_oversized_names_are_cut_and_reported_once_per_record(caplog):
    huge = "x" * 10_000_000
    provider = Provider(
        {
            "a": {"uid": "a", "username": huge, "status": "online"},
            "b": {"uid": "b", "username": "bob" + LONE_SURROGATE.encode().decode("unicode_escape")},
            "c" * 65: {"uid": "c" * 65, "username": "too long an id"},
        },
        name="n" * 500,
    )
    plugin = "cuts-names"
    with caplog.at_level(logging.WARNING):
        async with running_server([(plugin, provider)], environ=QUIET) as server:
            async with Client(server) as client:
                listed = client.server_list["1"]["name"]
                world = await client.join("one")
                for _ in range(3):  # reloads read the same records again
                    await server.publish(Refresh("1"))
                    await server.publish(Refresh(None))
                again = await client.join("one")
    users = world["data"]["users"]
    assert listed == "n" * inputs.NAME_CHARS
    assert world["data"]["serverName"] == "n" * inputs.NAME_CHARS
    assert users["a"]["username"] == "x" * inputs.USERNAME_CHARS
    assert users["b"]["username"] == "bob?"
    assert set(users) == {"a", "b"} and again["data"]["users"] == users
    reported = warnings_from(caplog, plugin)
    assert len(reported) == 4, reported
    assert any("user a: username cut from 10000000 to 100" in line for line in reported)
    assert any("user b: username characters that are not valid" in line for line in reported)
    assert any("guild 1: name cut from 500 to 100" in line for line in reported)
    assert any("no usable uid" in line for line in reported)


async def test_live_names_and_messages_are_cut_like_loaded_ones_and_reported_once(caplog):
    provider = Provider({"a": {"uid": "a", "username": "ann", "status": "online"}})
    plugin = "cuts-live"
    with caplog.at_level(logging.WARNING):
        async with running_server([(plugin, provider)], environ=QUIET) as server:
            async with Client(server) as client:
                await client.join("one")
                for status in ("idle", "dnd", "online"):
                    await server.publish(Presence("1", "a", status, "y" * 50_000), plugin)
                await server.publish(Message("1", "a", "m" * 10_000, "c" * 1000), plugin)
                await server.publish(Message("1", "a", "m" * 10_000, "general"), plugin)
                frames = await client.pending("one")
    presences = [f["data"] for f in frames if f["type"] == "presence"]
    messages = [f["data"] for f in frames if f["type"] == "message"]
    assert [p["username"] for p in presences] == ["y" * inputs.USERNAME_CHARS] * 3
    assert [len(m["message"]) for m in messages] == [inputs.MESSAGE_CHARS] * 2
    assert messages[0]["channel"] == "c" * inputs.CHANNEL_CHARS
    assert len(warnings_from(caplog, plugin)) == 2, warnings_from(caplog, plugin)


async def test_a_member_without_a_name_is_shown_under_its_uid_at_join_and_live(caplog):
    provider = Provider(
        {
            "a": {"uid": "a", "username": None, "status": "online"},
            "b": {"uid": "b", "username": "", "status": "online"},
            "c": {"uid": "c", "username": "cat", "status": "online"},
        }
    )
    plugin = "nameless"
    with caplog.at_level(logging.WARNING):
        async with running_server([(plugin, provider)], environ=QUIET) as server:
            async with Client(server) as client:
                world = await client.join("one")
                await server.publish(Presence("1", "d", "online"), plugin)
                await server.publish(Presence("1", "e", "online", ""), plugin)
                await server.publish(Presence("1", "c", "idle", ""), plugin)
                await server.publish(Presence("1", "a", "idle"), plugin)
                frames = await client.pending("one")
    users = world["data"]["users"]
    assert (users["a"]["username"], users["b"]["username"]) == ("a", "b")
    live = {f["data"]["uid"]: f["data"]["username"] for f in frames if f["type"] == "presence"}
    assert live == {"d": "d", "e": "e", "c": "c", "a": "a"}
    reported = warnings_from(caplog, plugin)
    assert sorted(line.split()[3] for line in reported) == ["a", "b", "c", "d", "e"]
    assert all("has no username; shown under its uid" in line for line in reported)
