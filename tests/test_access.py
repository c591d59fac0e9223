"""Access follows the guild at every moment: through the d-back API, whose callbacks answer
differently from one call to the next, as an application's data changes under it.

Whenever a guild turns passworded, changes its password or leaves the list, its viewers who
are not admitted under the new rules are taken out at once and told with an ``error``; no
refresh, reload or event reaches them afterwards. Silence is checked without waiting for it:
``Client.pending`` returns everything the server had queued for a client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from d_back.server import WebSocketServer
from dback_core.serving.server import DbackServer
from dback_core.testing import Client
from dback_core.wire import protocol

ONE = "1"
TWO = "2"


class Application:
    """An application's guilds and members, changed by the test between calls."""

    def __init__(self) -> None:
        self.servers: dict[str, dict[str, Any]] = {
            ONE: {"id": "one", "name": "One", "passworded": False, "is_default": True},
            TWO: {"id": "two", "name": "Two", "passworded": False},
        }
        self.users = {
            ONE: {"a": {"uid": "a", "username": "ann", "status": "online"}},
            TWO: {"b": {"uid": "b", "username": "bob", "status": "online"}},
        }
        self.server_calls = 0

    def get_server_data(self) -> dict[str, dict[str, Any]]:
        self.server_calls += 1
        return {key: dict(record) for key, record in self.servers.items()}

    def get_user_data(self, server_id: str) -> dict[str, Any]:
        return dict(self.users.get(server_id, {}))


@contextlib.asynccontextmanager
async def serving(
    app: Application, validate: Any = None, **settings: Any
) -> AsyncIterator[WebSocketServer]:
    api = WebSocketServer(port=0, host="127.0.0.1", **settings)
    api.on_get_server_data(app.get_server_data)
    api.on_get_user_data(app.get_user_data)
    if validate is not None:
        api.on_validate_discord_user(validate)
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


def core(api: WebSocketServer) -> DbackServer:
    assert api.server is not None
    return api.server


def about(frames: list[dict[str, Any]], guild: str) -> list[dict[str, Any]]:
    """The frames that carry something of ``guild``'s world."""
    return [
        frame
        for frame in frames
        if frame.get("server") == guild
        or frame.get("serverId") == guild
        or frame["type"] == "server-join"
    ]


async def test_a_guild_turning_passworded_takes_its_viewers_out_at_once():
    app = Application()
    async with serving(app) as api, Client(core(api)) as viewer:
        assert (await viewer.join("one"))["type"] == "server-join"
        app.servers[ONE] |= {"passworded": True, "password": "pw"}
        await api.broadcast_message({"type": "refresh_data", "serverId": ONE})
        told = await viewer.recv_type("error")
        await api.broadcast_presence(ONE, "a", "idle")
        await api.broadcast_message(ONE, "a", "hello", "general")
        leaked = about(await viewer.pending("two"), ONE)
        refused = await viewer.join("one")
        again = await viewer.join("one", password="pw")
        await api.broadcast_presence(ONE, "a", "dnd")
        live = await viewer.recv_type("presence")
    assert told["data"]["message"] == protocol.ACCESS_CHANGED
    assert leaked == []
    assert refused["data"]["message"] == protocol.LOGIN_REQUIRED
    assert again["type"] == "server-join" and again["data"]["users"]["a"]["status"] == "idle"
    assert live["data"]["status"] == "dnd"


async def test_a_new_password_voids_every_login_made_with_the_old_one():
    app = Application()
    app.servers[ONE] |= {"passworded": True, "password": "old"}
    async with serving(app) as api, Client(core(api)) as viewer:
        assert (await viewer.join("one", password="old"))["type"] == "server-join"
        app.servers[ONE]["password"] = "new"
        await api.broadcast_message({"type": "refresh_data", "serverId": None})
        told = await viewer.recv_type("error")
        await api.broadcast_presence(ONE, "a", "idle")
        leaked = about(await viewer.pending("two"), ONE)
        await viewer.send({"type": "get_user_data", "serverId": ONE})
        members = await viewer.recv_type("user_data", "error")
        with_old = await viewer.join("one", password="old")
        with_new = await viewer.join("one", password="new")
    assert told["data"]["message"] == protocol.ACCESS_CHANGED
    assert leaked == []
    assert members["data"]["message"] == protocol.LOGIN_REQUIRED
    assert with_old["data"]["message"] == protocol.LOGIN_REFUSED
    assert with_new["type"] == "server-join"


async def test_viewers_still_admitted_stay_when_only_others_are_locked_out():
    app = Application()
    app.servers[ONE] |= {"passworded": True, "password": "pw"}
    async with serving(app) as api, Client(core(api)) as member:
        await member.join("one", password="pw")
        app.servers[ONE]["name"] = "One, renamed"  # a list change that keeps the rules
        await api.broadcast_message({"type": "refresh_data", "serverId": ONE})
        await api.broadcast_presence(ONE, "a", "idle")
        frames = await member.pending("two")
    assert "error" not in [frame["type"] for frame in frames]
    assert [f["data"]["status"] for f in frames if f["type"] == "presence"] == ["idle"]


async def periodic_reloads(server: DbackServer, more: int) -> None:
    """Wait until ``more`` further rounds of the server's periodic reload have finished."""
    target = server.reloader.rounds + more
    async with asyncio.timeout(10):
        while server.reloader.rounds < target:
            await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_a_guild_disabled_and_enabled_again_sends_its_old_viewers_nothing():
    """The periodic reload alone notices both changes; the viewer is taken out when the
    guild leaves the list and is not sent its world when it comes back."""
    app = Application()
    async with serving(app, refresh_seconds=1) as api, Client(core(api)) as viewer:
        await viewer.join("one")
        del app.servers[ONE]
        told = await viewer.recv_type("error", timeout=10)
        app.servers[ONE] = {"id": "one", "name": "One", "passworded": False}
        await periodic_reloads(core(api), 2)
        await api.broadcast_presence(ONE, "a", "idle")
        frames = await viewer.pending("two")
    assert told["data"]["message"] == protocol.UNKNOWN_SERVER
    assert about(frames, ONE) == []
    assert [frame["type"] for frame in frames] == ["server-list", "server-list"]


async def test_a_login_that_finishes_after_the_rules_changed_does_not_let_the_viewer_in():
    """The Discord check takes its time; the guild gets a password meanwhile. The viewer
    was checked under rules that no longer hold, so it is not let in."""
    app = Application()
    app.servers[ONE] |= {"passworded": True}
    asked = asyncio.Event()
    answer = asyncio.Event()

    async def validate(token: str, user: dict, server_id: str) -> bool:
        asked.set()
        await answer.wait()
        return True

    async with serving(app, validate) as api, Client(core(api)) as viewer:
        await viewer.send({"type": "connect", "data": {"server": "one", "discordToken": "t"}})
        await asyncio.wait_for(asked.wait(), 5)
        app.servers[ONE]["password"] = "pw"
        await api.broadcast_message({"type": "refresh_data", "serverId": None})
        answer.set()
        reply = await viewer.recv_type("server-join", "error")
        await api.broadcast_presence(ONE, "a", "idle")
        leaked = about(await viewer.pending("two"), ONE)
    assert reply["data"]["message"] == protocol.ACCESS_CHANGED
    assert leaked == []


async def test_a_refused_connect_leaves_the_viewer_in_its_current_guild():
    """The d-zone client shows the error and keeps drawing its current world, so that
    world stays live; the refused guild sends nothing."""
    app = Application()
    app.servers[ONE] |= {"passworded": True, "password": "pw"}
    async with serving(app) as api, Client(core(api)) as viewer:
        await viewer.join("two")
        refused = await viewer.join("one", password="wrong")
        unknown = await viewer.join("nowhere")
        await api.broadcast_presence(TWO, "b", "idle")
        await api.broadcast_presence(ONE, "a", "idle")
        frames = await viewer.pending("two")
    assert refused["data"]["message"] == protocol.LOGIN_REFUSED
    assert unknown["data"]["message"] == protocol.UNKNOWN_SERVER
    assert [(f["server"], f["data"]["status"]) for f in frames] == [(TWO, "idle")]
