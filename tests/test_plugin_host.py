"""The ``PluginHost`` handle: what a plugin's ``startup`` receives as ``host``, bound to that
plugin, and everything it offers, against a real server and real WebSocket clients."""

from __future__ import annotations

import asyncio

import pytest

from dback_core import PluginHost, Unavailable, hookimpl
from dback_core.loading.plugins import FAILED, load_plugins
from dback_core.plugin.events import Message, Presence, Refresh
from dback_core.plugin.health import UNAVAILABLE
from dback_core.testing import Client, running_server
from tests.support.http_get import fetch_content


def member(uid: str, name: str, status: str = "online") -> dict:
    return {"uid": uid, "username": name, "status": status, "roleColor": "#112233"}


class Provider:
    """One guild of its own; keeps its host and what ``event_applied`` saw."""

    def __init__(self, key: str, short: str, keep_loaded: bool = False):
        self.key, self.short = key, short
        self.keep = keep_loaded
        self.members = {"1": member("1", "one"), "2": member("2", "two")}
        self.host: PluginHost | None = None
        self.applied: list[tuple[object, str | None]] = []
        self.seen_when_ready: tuple[bool, list[str]] | None = None
        self.waiter: asyncio.Task[None] | None = None

    @hookimpl
    def startup(self, host: PluginHost):
        self.host = host
        if self.keep:
            host.keep_loaded()
        self.waiter = asyncio.create_task(self._when_ready())

    async def _when_ready(self):
        assert self.host is not None
        await self.host.wait_ready()
        self.seen_when_ready = (self.host.ready, sorted(self.host.loaded_guilds()))

    @hookimpl
    def get_server_data(self):
        return {self.key: {"id": self.short, "name": self.short.title()}}

    @hookimpl
    def get_user_data(self, server_id):
        return dict(self.members) if server_id == self.key else None

    @hookimpl
    def event_applied(self, event, origin):
        self.applied.append((event, origin))


async def test_startup_receives_a_host_bound_to_its_plugin_that_waits_until_ready():
    first, second = Provider("10", "ten", keep_loaded=True), Provider("20", "twenty")
    plugins = [("first", first), ("second", second)]
    async with running_server(in_process=plugins, environ={"DBACK_PLUGINS": ""}):
        assert isinstance(first.host, PluginHost)
        assert (first.host.plugin_name, second.host.plugin_name) == ("first", "second")
        await asyncio.wait_for(first.waiter, 5)
        # Woken only once the server was ready, with every listed guild kept loaded.
        assert first.seen_when_ready == (True, ["10", "20"])
        assert sorted(first.host.guild_list()) == ["10", "20"]
    assert not first.host.ready


async def test_publish_is_the_plugins_own_event_or_with_relay_false_one_from_elsewhere():
    first, second = Provider("10", "ten"), Provider("20", "twenty")
    plugins = [("first", first), ("second", second)]
    async with running_server(in_process=plugins, environ={"DBACK_PLUGINS": ""}) as server:
        async with Client(server) as ten, Client(server) as twenty:
            await ten.join("ten")
            await twenty.join("twenty")
            # Its own guild: delivered, and reported with the plugin as origin.
            await first.host.publish(Message("10", "1", "hello"))
            frame = await ten.recv_type("message")
            assert frame["data"]["message"] == "hello"
            assert first.applied[-1] == (Message("10", "1", "hello"), "first")
            # Another plugin's guild: dropped, like an event source's would be.
            await first.host.publish(Presence("20", "2", "dnd"))
            assert not [f for f in await twenty.pending("20") if f["type"] == "presence"]
            # relay=False: an event from elsewhere reaches any guild and is not reported.
            reported = len(second.applied)
            await first.host.publish(Presence("20", "2", "dnd"), relay=False)
            presence = await twenty.recv_type("presence")
            assert presence["data"]["status"] == "dnd"
            assert len(second.applied) == reported


async def test_refresh_resends_always_or_only_when_changed():
    provider = Provider("10", "ten")
    async with running_server(in_process=[("db", provider)], environ={"DBACK_PLUGINS": ""}) as srv:
        async with Client(srv) as client:
            await client.join("ten")
            assert await provider.host.refresh("10", always=False) is False
            assert await provider.host.refresh("10") is True
            assert (await client.recv_type("server-join"))["data"]["users"].keys() == {"1", "2"}
            provider.members["3"] = member("3", "three")
            assert await provider.host.refresh("10", always=False) is True
            join = await client.recv_type("server-join")
            assert join["data"]["users"]["3"]["username"] == "three"
            provider.applied.clear()
            await provider.host.publish(Refresh(None))
            assert provider.applied == [(Refresh(None), "db")]


async def test_guild_views_are_read_only_and_follow_the_guild():
    provider = Provider("10", "ten")
    async with running_server(in_process=[("db", provider)], environ={"DBACK_PLUGINS": ""}) as srv:
        host = provider.host
        assert host.guild("10") is None  # listed, not loaded: nobody joined
        async with Client(srv) as client:
            await client.join("ten")
            view = host.guild("10")
            assert (view.key, view.info.id, view.owner, view.client_id) == ("10", "ten", "db", None)
            assert dict(view.members["1"]) == member("1", "one")
            with pytest.raises(TypeError):
                view.members["1"]["status"] = "offline"  # type: ignore[index]
            with pytest.raises(TypeError):
                view.members["9"] = member("9", "nine")  # type: ignore[index]
            listed = host.guild_list()["10"]
            with pytest.raises(AttributeError):
                listed.name = "renamed"  # type: ignore[misc]
            await host.publish(Presence("10", "1", "idle"))
            await client.recv_type("presence")
            assert view.members["1"]["status"] == "idle"  # a live view, not a copy
            assert list(host.loaded_guilds()) == ["10"]


async def test_report_health_needs_no_plugin_argument():
    provider = Provider("10", "ten")
    async with running_server(in_process=[("db", provider)], environ={"DBACK_PLUGINS": ""}) as srv:
        provider.host.report_health(UNAVAILABLE, "cannot reach 127.0.0.1:5432")
        status, body = await fetch_content(srv, "/readyz")
        assert status == 503
        assert body["waiting"] == {"db": "unavailable: cannot reach 127.0.0.1:5432"}


class Holder:
    """Holds the other plugins back and lets a test release and hold them through its host."""

    dback_holds_others = True

    @hookimpl
    def startup(self, host: PluginHost):
        self.host = host


async def test_a_holder_releases_and_holds_the_others_through_its_host():
    holder, provider = Holder(), Provider("10", "ten")
    plugins = [("bus", holder), ("db", provider)]
    async with running_server(in_process=plugins, environ={"DBACK_PLUGINS": ""}):
        assert provider.host is None  # on standby: not started
        await holder.host.release_plugins()
        assert provider.host is not None
        assert list(holder.host.guild_list()) == ["10"]
        await holder.host.hold_plugins()
        assert list(holder.host.guild_list()) == []


class OldStyle:
    """A plugin written before ``host``, asking ``startup`` for the server object."""

    @hookimpl
    def startup(self, server, host):
        self.server, self.host = server, host


def test_a_startup_asking_for_the_server_object_fails_to_load_naming_it():
    plugins = load_plugins(environ={"DBACK_PLUGINS": ""}, in_process=[("old", OldStyle())])
    (record,) = plugins.records
    assert record.status == FAILED
    assert "server" in (record.error or "")


class Gatekeeper(Provider):
    """A passworded guild whose ``authorize`` admits each password under its own grant."""

    @hookimpl
    def get_server_data(self):
        return {self.key: {"id": self.short, "name": "Gated", "passworded": True}}

    @hookimpl
    def authorize(self, server_id, server, credentials):
        password = credentials.get("password")
        return f"user:{password}" if server_id == self.key and password else False


async def test_revoke_takes_out_only_the_viewers_admitted_under_that_grant():
    gate, other = Gatekeeper("10", "gated"), Provider("20", "open")
    plugins = [("gate", gate), ("other", other)]
    async with running_server(in_process=plugins, environ={"DBACK_PLUGINS": ""}) as server:
        async with Client(server) as ann, Client(server) as bob, Client(server) as ann_away:
            assert (await ann.join("gated", password="ann"))["type"] == "server-join"
            assert (await bob.join("gated", password="bob"))["type"] == "server-join"
            assert (await ann_away.join("gated", password="ann"))["type"] == "server-join"
            await ann_away.join("open")
            assert gate.host.revoke("10", "user:nobody", "gone") == 0
            assert gate.host.revoke("10", "user:ann", "You left the guild.") == 2
            told = await ann.recv_type("error")
            await gate.host.publish(Presence("10", "1", "idle"))
            bob_heard = await bob.recv_type("presence")
            # Everything queued for ann before now, up to the refusal of this request.
            await ann.send({"type": "get_user_data", "serverId": "gated"})
            ann_after = [await ann.recv()]
            while ann_after[-1]["type"] != "error":
                ann_after.append(await ann.recv())
            ann_away_back = await ann_away.join("gated")
    assert told["data"]["message"] == "You left the guild."
    assert bob_heard["data"]["status"] == "idle"
    assert [frame for frame in ann_after if frame["type"] == "presence"] == []
    # Admitted elsewhere meanwhile, its admission is void too: back means a login again.
    assert ann_away_back["type"] == "error"


class OutOfReach(Provider):
    """A provider whose members cannot be read while ``reachable`` is False."""

    def __init__(self) -> None:
        super().__init__("10", "ten")
        self.reachable = True

    @hookimpl
    def get_user_data(self, server_id):
        if not self.reachable:
            raise Unavailable("out of reach")
        return super().get_user_data(server_id)


async def test_a_guild_served_empty_to_its_viewers_is_loaded_by_the_next_full_refresh():
    """A viewer that joined while the providers were out of reach was served the guild
    empty, and the guild was left unloaded: the refresh a bus does once it answers again
    must load it, or its chat goes nowhere until another viewer joins."""
    provider = OutOfReach()
    async with running_server(
        in_process=[("flaky", provider)], environ={"DBACK_PLUGINS": ""}
    ) as server:
        async with Client(server) as viewer:
            provider.reachable = False
            joined = await viewer.join("ten")
            assert joined["data"]["users"] == {}
            provider.reachable = True
            await server.refresh_everything()
            world = await viewer.recv_type("server-join")
            assert set(world["data"]["users"]) == {"1", "2"}
            assert provider.host is not None
            await provider.host.publish(Message("10", "1", "back"))
            frame = await viewer.recv_type("message")
            assert frame["data"]["message"] == "back"
