"""Publisher and edge servers in this process over the real Redis: the edge replaces the
embedded mock, the mock can be the publisher's provider, bad bus input is ignored, an edge
that starts before its publisher catches up, and guild-list changes travel."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json

import pytest

from dback_core import hookimpl
from dback_core.plugin.events import ClientIdUpdate, Message, Presence, Refresh
from dback_core.testing import Client, running_server
from dback_redis.codec import encode
from dback_redis.config import RedisConfig
from dback_redis.plugin import RedisPlugin

pytestmark = pytest.mark.redis

WAIT = 30.0


class Provider:
    def __init__(self):
        self.servers = {"1": {"id": "one", "name": "One"}}
        self.users = {"1": {"5": {"uid": "5", "username": "five", "status": "online"}}}

    @hookimpl
    def get_server_data(self):
        return self.servers

    @hookimpl
    def get_user_data(self, server_id):
        return self.users.get(server_id)


async def snapshot_written(namespace) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not await namespace.admin.exists(f"{namespace.prefix}:servers"):
        assert loop.time() < deadline, "the publisher wrote no snapshot"
        await asyncio.sleep(0.05)


def in_process(url, prefix, role):
    return ("dback-redis", RedisPlugin(RedisConfig(url=url, role=role, prefix=prefix)))


@contextlib.asynccontextmanager
async def edge_from_entry_point(monkeypatch, url, prefix):
    """An edge loaded the way ``dback serve`` loads it, beside the installed mock."""
    monkeypatch.setenv("DBACK_REDIS_URL", url)
    monkeypatch.setenv("DBACK_REDIS_ROLE", "edge")
    monkeypatch.setenv("DBACK_REDIS_PREFIX", prefix)
    async with running_server() as server:
        yield server


async def test_an_edge_replaces_the_mock_and_follows_a_mock_publisher(namespace, monkeypatch):
    url = await namespace.new_user("pub")
    monkeypatch.setenv("DBACK_MOCK_SEED", "3")
    monkeypatch.setenv("DBACK_MOCK_INTERVAL", "0.05")
    publisher = in_process(url, namespace.prefix, "publisher")
    # The mock is the publisher's provider here: the publisher implements no data hook.
    async with running_server([publisher], environ={"DBACK_PLUGINS": "dback-mock"}) as a:
        await snapshot_written(namespace)
        async with edge_from_entry_point(monkeypatch, url, namespace.prefix) as b:
            assert [record.name for record in b.plugins.active] == ["dback-redis", "dback-mock"]
            for hook in ("get_server_data", "get_user_data", "event_sources"):
                serving = [record.name for record, _ in b.hooks.implementations(hook)]
                assert serving == ["dback-redis"], (hook, serving)  # the mock stepped aside
            assert b.directory.servers == {
                key: dataclasses.replace(info, plugin="dback-redis")
                for key, info in a.directory.servers.items()
            }
            assert b.sources.tasks == []  # the mock's simulation does not run on an edge
            async with Client(b, timeout=WAIT) as viewer:
                joined = await viewer.join("default")
                key = next(k for k, i in b.directory.servers.items() if i.default)
                assert set(joined["data"]["users"]) == set(a.directory.guilds[key].users)
                change = await viewer.recv_type("presence", "message", timeout=WAIT)
                assert change["server"] == key


async def test_bad_foreign_and_duplicate_bus_messages_are_ignored(namespace):
    url = await namespace.new_user("pub")
    provider = Provider()
    publisher = in_process(url, namespace.prefix, "publisher")
    async with running_server([("provider", provider), publisher], environ={"DBACK_PLUGINS": ""}):
        await snapshot_written(namespace)
        edge = in_process(url, namespace.prefix, "edge")
        async with running_server([edge], environ={"DBACK_PLUGINS": ""}) as b:
            async with Client(b, timeout=WAIT) as viewer:
                await viewer.join("one")
                channel = f"{namespace.prefix}:events"
                own = edge[1].config.process_id
                admin = namespace.admin
                await admin.publish(channel, "{not json")
                await admin.publish(channel, encode(Message("1", "5", "echo"), own, 1))
                await admin.publish(channel, encode(Message("1", "5", "first"), "other", 1))
                await admin.publish(channel, encode(Message("1", "5", "again"), "other", 1))
                await admin.publish(channel, encode(ClientIdUpdate("1", "77"), "other", 2))
                frames = []
                while not frames or frames[-1]["type"] != "update-clientid":
                    frames.append(await viewer.recv(WAIT))
                assert [f["data"].get("message") for f in frames[:-1]] == ["first"]
                assert frames[-1]["data"] == {"clientId": "77"}
                assert (edge[1].role.applied, edge[1].role.resyncs) == (2, 0)
                assert b.ready


async def test_an_edge_started_before_its_publisher_catches_up(namespace):
    url = await namespace.new_user("pub")
    edge = in_process(url, namespace.prefix, "edge")
    async with running_server([edge], environ={"DBACK_PLUGINS": ""}) as b:
        assert b.directory.servers == {}
        async with Client(b, timeout=WAIT) as viewer:
            assert viewer.server_list == {}
            publisher = in_process(url, namespace.prefix, "publisher")
            async with running_server(
                [("provider", Provider()), publisher], environ={"DBACK_PLUGINS": ""}
            ):
                pushed = await viewer.recv_type("server-list", timeout=WAIT)
                assert pushed["data"] == {
                    "1": {"id": "one", "name": "One", "passworded": False, "default": True}
                }
                joined = await viewer.join("one")
                assert set(joined["data"]["users"]) == {"5"}


async def test_guild_list_changes_and_passwords_reach_the_edges(namespace):
    url = await namespace.new_user("pub")
    provider = Provider()
    publisher = in_process(url, namespace.prefix, "publisher")
    async with running_server(
        [("provider", provider), publisher], environ={"DBACK_PLUGINS": ""}
    ) as a:
        await snapshot_written(namespace)
        edge = in_process(url, namespace.prefix, "edge")
        async with running_server([edge], environ={"DBACK_PLUGINS": ""}) as b:
            async with Client(b, timeout=WAIT) as viewer:
                provider.servers["2"] = {"id": "vault", "name": "Vault", "password": "sesame"}
                provider.users["2"] = {"8": {"uid": "8", "username": "eight"}}
                await a.publish(Refresh(None))
                pushed = await viewer.recv_type("server-list", timeout=WAIT)
                assert pushed["data"]["2"] == {"id": "vault", "name": "Vault", "passworded": True}
                refused = await viewer.join("vault", password="wrong")
                assert refused["type"] == "error"
                joined = await viewer.join("vault", password="sesame")
                assert set(joined["data"]["users"]) == {"8"}
                stored = json.loads(await namespace.admin.get(f"{namespace.prefix}:servers"))
                assert set(stored) == {"1", "2"}


async def test_an_edge_started_while_redis_refuses_it_serves_once_redis_answers(
    namespace, monkeypatch
):
    monkeypatch.setattr("dback_redis.edge.SUBSCRIBE_WAIT", 0.3)
    pub_url = await namespace.new_user("pub")
    edge_url = await namespace.new_user("edge")
    await namespace.lock_out("edge")
    publisher = in_process(pub_url, namespace.prefix, "publisher")
    async with running_server([("provider", Provider()), publisher], environ={"DBACK_PLUGINS": ""}):
        await snapshot_written(namespace)
        edge = in_process(edge_url, namespace.prefix, "edge")
        async with running_server([edge], environ={"DBACK_PLUGINS": ""}) as b:
            async with Client(b, timeout=WAIT) as viewer:
                assert viewer.server_list == {}  # serving, with nothing to serve yet
                await namespace.let_in("edge")
                pushed = await viewer.recv_type("server-list", timeout=WAIT)
                assert set(pushed["data"]) == {"1"}
                joined = await viewer.join("one")
                assert set(joined["data"]["users"]) == {"5"}


async def test_a_publisher_without_redis_serves_locally_and_catches_up(namespace):
    pub_url = await namespace.new_user("pub")
    edge_url = await namespace.new_user("edge")
    await namespace.lock_out("pub")
    publisher = in_process(pub_url, namespace.prefix, "publisher")
    async with running_server(
        [("provider", Provider()), publisher], environ={"DBACK_PLUGINS": ""}
    ) as a:
        edge = in_process(edge_url, namespace.prefix, "edge")
        async with (
            running_server([edge], environ={"DBACK_PLUGINS": ""}) as b,
            Client(a, timeout=WAIT) as on_a,
            Client(b, timeout=WAIT) as on_b,
        ):
            await on_a.join("one")
            await a.publish(Presence("1", "5", "dnd"), origin="provider")
            local = await on_a.recv_type("presence", timeout=WAIT)
            assert local["data"]["status"] == "dnd"
            assert on_b.server_list == {}
            await namespace.let_in("pub")
            pushed = await on_b.recv_type("server-list", timeout=WAIT)
            assert set(pushed["data"]) == {"1"}
            joined = await on_b.join("one")
            assert joined["data"]["users"]["5"]["status"] == "dnd"


async def test_a_resync_that_finds_nothing_new_sends_viewers_nothing(namespace):
    url = await namespace.new_user("pub")
    async with running_server(
        [("provider", Provider()), in_process(url, namespace.prefix, "publisher")],
        environ={"DBACK_PLUGINS": ""},
    ) as a:
        await snapshot_written(namespace)
        edge = in_process(url, namespace.prefix, "edge")
        async with running_server([edge], environ={"DBACK_PLUGINS": ""}) as b:
            async with Client(b, timeout=WAIT) as viewer:
                await viewer.join("one")
                assert await namespace.kill(edge[1].config.process_id, kind="pubsub") == 1
                loop = asyncio.get_running_loop()
                deadline = loop.time() + WAIT
                while edge[1].role.resyncs == 0:
                    assert loop.time() < deadline, "the edge did not resynchronise"
                    await asyncio.sleep(0.05)
                await a.publish(Presence("1", "5", "idle"), origin="provider")
                first = await viewer.recv(WAIT)
                assert (first["type"], first["data"]["status"]) == ("presence", "idle")
