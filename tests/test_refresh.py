"""Keeping guilds current: refresh events, the TTL, guild-list changes and client ids."""

from __future__ import annotations

import asyncio

import pytest

from dback_core import hookimpl
from dback_core.plugin.events import ClientIdUpdate, Presence, Refresh
from dback_core.testing import Client, running_server
from dback_mock.world import MockWorld
from tests.support.drain import DrainClient

QUIET = {"DBACK_PLUGINS": ""}


class Mutable:
    """A provider whose data the test changes behind the server's back."""

    def __init__(self):
        self.servers = {"1": {"id": "one", "name": "One"}}
        self.users = {"1": {"a": {"uid": "a", "username": "ann", "status": "online"}}}
        self.client_ids = {"1": "client-1"}
        self.user_calls = 0

    @hookimpl
    def get_server_data(self):
        return dict(self.servers)

    @hookimpl
    async def get_user_data(self, server_id):
        self.user_calls += 1
        return dict(self.users.get(server_id, {}))

    @hookimpl
    def get_client_id(self, server_id):
        return self.client_ids.get(server_id)


async def test_refresh_event_reloads_the_guild_and_sends_a_fresh_world():
    provider = Mutable()
    async with running_server([("p", provider)], environ=QUIET) as server:
        async with Client(server) as client:
            first = await client.join("one")
            provider.users["1"]["b"] = {"uid": "b", "username": "bob", "status": "idle"}
            await server.publish(Refresh("1"))
            fresh = await client.recv_type("server-join")
            notice = await client.recv_type("refresh_data")
    assert set(first["data"]["users"]) == {"a"}
    assert set(fresh["data"]["users"]) == {"a", "b"}
    assert fresh["data"]["request"] == {"server": "one"}
    assert notice == {"type": "refresh_data", "serverId": "1"}


async def test_a_plugins_refresh_sends_a_new_world_only_when_something_changed():
    provider = Mutable()
    async with running_server([("p", provider)], environ=QUIET) as server:
        async with Client(server) as client:
            await client.join("one")
            calls = provider.user_calls
            await server.publish(Refresh("1"), "p")
            assert provider.user_calls == calls + 1
            provider.users["1"]["a"] = {"uid": "a", "username": "ann", "status": "idle"}
            await server.publish(Refresh("1"), "p")
            fresh = await client.recv_type("server-join", "refresh_data")
    assert fresh["type"] == "server-join"
    assert fresh["data"]["users"]["a"]["status"] == "idle"


@pytest.mark.slow
async def test_the_ttl_reloads_watched_guilds_and_sends_only_real_changes():
    provider = Mutable()
    async with running_server([("p", provider)], environ=QUIET, refresh_seconds=1) as server:
        async with Client(server) as client:
            await client.join("one")
            calls = provider.user_calls
            await asyncio.sleep(1.3)
            assert provider.user_calls > calls  # reloaded, nothing changed, nothing sent
            provider.users["1"]["a"] = {"uid": "a", "username": "ann", "status": "dnd"}
            fresh = await client.recv_type("server-join", timeout=5)
    assert fresh["data"]["users"]["a"]["status"] == "dnd"


async def test_a_guild_list_refresh_pushes_the_new_list_to_every_client():
    provider = Mutable()
    async with running_server([("p", provider)], environ=QUIET) as server:
        async with Client(server) as watcher, Client(server) as idle:
            await watcher.join("one")
            provider.servers["2"] = {"id": "two", "name": "Two"}
            await server.publish(Refresh(None))
            to_watcher = await watcher.recv_type("server-list")
            to_idle = await idle.recv_type("server-list")
            joined = await idle.join("two")
    assert set(to_watcher["data"]) == {"1", "2"} and to_idle == to_watcher
    assert joined["data"]["serverName"] == "Two"


async def test_client_id_is_sent_on_join_and_updates_are_pushed():
    provider = Mutable()
    async with running_server([("p", provider)], environ=QUIET) as server:
        async with Client(server) as client:
            join = await client.join("one")
            await server.publish(ClientIdUpdate("1", "client-2"))
            update = await client.recv_type("update-clientid")
            rejoin = await client.join("one")
    assert join["data"]["clientId"] == "client-1"
    assert update == {"type": "update-clientid", "server": "1", "data": {"clientId": "client-2"}}
    assert rejoin["data"]["clientId"] == "client-2"


def test_the_mock_world_is_reproducible_from_its_seed():
    first, second, other = MockWorld(seed=11), MockWorld(seed=11), MockWorld(seed=12)
    assert first.servers() == second.servers()
    assert first.users("232769614004748288") == second.users("232769614004748288")
    assert first.users("232769614004748288") != other.users("232769614004748288")
    assert [first.tick() for _ in range(20)] == [second.tick() for _ in range(20)]


def test_the_mock_world_has_four_guilds_varied_members_and_one_passworded():
    world = MockWorld(seed=1, password="pw")
    servers = world.servers()
    assert len(servers) == 4
    assert [key for key, s in servers.items() if s["is_default"]] == ["232769614004748288"]
    assert [s["id"] for s in servers.values() if s["passworded"]] == ["oauth"]
    users = [u for key in servers for u in world.users(key).values()]
    assert {u["status"] for u in users} == {"online", "idle", "dnd", "offline"}
    assert len({u["username"] for u in users}) > 50
    assert any(u["roleColor"] is False for u in users) and any(u["roleColor"] for u in users)


class Big(Mutable):
    """A guild whose world is about 250 KB."""

    def __init__(self):
        super().__init__()
        self.users = {
            "1": {
                str(uid): {"uid": str(uid), "username": f"member {uid}", "status": "online"}
                for uid in range(3000)
            }
        }


async def test_a_new_world_never_waits_for_a_client_that_stopped_reading():
    """Worlds resent after a refresh go through the fan-out like any broadcast: a viewer that
    stopped reading is cut off at its buffer limit, and neither the refresh (nor the event
    pipeline behind it) nor the other viewers wait for it."""
    provider = Big()
    async with running_server(
        [("p", provider)], environ=QUIET, max_client_buffer=64 * 1024
    ) as server:
        host, port = server.address
        silent = DrainClient(host, port, receive_buffer=4096)
        try:
            await silent.open()
            await silent.join("one")
            async with Client(server, max_size=None) as reader:
                await reader.join("one")
                # 20 worlds of 250 KB: more than the kernel buffers a silent client can hold.
                for status in ("idle", "dnd", "offline", "online") * 5:
                    provider.users["1"]["0"] = {
                        "uid": "0",
                        "username": "member 0",
                        "status": status,
                    }
                    await asyncio.wait_for(server.publish(Refresh("1")), 60)
                    fresh = await reader.recv_type("server-join", timeout=60)
                    assert fresh["data"]["users"]["0"]["status"] == status
            assert server.fanout.slow_disconnects == 1
        finally:
            silent.close()


@pytest.mark.slow
async def test_the_ttl_resends_the_world_when_only_the_client_id_changed():
    provider = Mutable()
    async with running_server([("p", provider)], environ=QUIET, refresh_seconds=1.0) as server:
        async with Client(server) as client:
            await client.join("one")
            provider.client_ids["1"] = "client-2"
            fresh = await client.recv_type("server-join", timeout=30)
    assert fresh["data"]["clientId"] == "client-2"


class FailsFirst(Mutable):
    """A provider whose first member lookup fails, as a database that is still starting."""

    def __init__(self):
        super().__init__()
        self.failing = True

    @hookimpl
    async def get_user_data(self, server_id):
        if self.failing:
            raise ConnectionError("database is starting")
        return dict(self.users.get(server_id, {}))


@pytest.mark.slow
async def test_viewers_of_a_guild_whose_first_load_failed_get_its_world_once_it_loads():
    provider = FailsFirst()
    async with running_server([("p", provider)], environ=QUIET, refresh_seconds=1.0) as server:
        async with Client(server) as client:
            empty = await client.join("one")
            provider.failing = False
            fresh = await client.recv_type("server-join", timeout=30)
    assert empty["data"]["users"] == {}
    assert set(fresh["data"]["users"]) == {"a"}


class Slow(Mutable):
    """A provider that reads its data, then takes a while to answer (a slow query)."""

    def __init__(self):
        super().__init__()
        self.answer_after = asyncio.Event()
        self.reading = asyncio.Event()

    @hookimpl
    async def get_user_data(self, server_id):
        snapshot = {uid: dict(user) for uid, user in self.users.get(server_id, {}).items()}
        self.reading.set()
        await self.answer_after.wait()
        return snapshot


async def test_changes_that_arrive_during_a_reload_survive_it():
    """The provider's answer was read before the change; the change must not be lost."""
    provider = Slow()
    provider.answer_after.set()
    async with running_server([("p", provider)], environ=QUIET) as server:
        async with Client(server) as client:
            await client.join("one")
            provider.answer_after.clear()
            provider.reading.clear()
            reload = asyncio.create_task(server.refresh("1", always=False))
            await provider.reading.wait()
            await server.publish(Presence("1", "a", "dnd", username="ann"), "p")  # after the read
            await server.publish(Presence("1", "z", "idle", username="zed"), "p")
            await server.publish(ClientIdUpdate("1", "client-2"), "p")
            provider.answer_after.set()
            await reload
            again = await client.join("one")
    users = again["data"]["users"]
    assert users["a"]["status"] == "dnd" and users["z"]["status"] == "idle"
    assert again["data"]["clientId"] == "client-2"


async def test_changes_that_arrive_during_a_first_load_are_not_lost():
    provider = Slow()
    async with running_server([("p", provider)], environ=QUIET) as server:
        async with Client(server) as client:
            await client.send({"type": "connect", "data": {"server": "one"}})
            await provider.reading.wait()
            await server.publish(Presence("1", "a", "idle", username="ann"), "p")
            await server.publish(Presence("1", "a", "offline", delete=True), "p")
            provider.answer_after.set()
            join = await client.recv_type("server-join")
    assert join["data"]["users"] == {}
