"""Three and then four real dback processes over the real Redis: publisher A (in this
process, with a provider) and edges B, C, D (``dback serve`` subprocesses).

A change injected on A reaches the viewers of B and C exactly once, also for a guild
nobody watches on A; a late edge serves the current world; cutting the Redis connections of
the edges, of the publisher, or only the subscriptions, and restoring them, leaves every
viewer with A's world; and only A ever publishes, each message once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from bus_recorder import BusRecorder

from dback_core import hookimpl
from dback_core.plugin.events import Message, Presence
from dback_core.testing import Client, running_server
from dback_redis.config import RedisConfig
from dback_redis.plugin import RedisPlugin

pytestmark = pytest.mark.redis

WAIT = 30.0


def user(uid, name, status="online"):
    return {"uid": uid, "username": name, "status": status, "roleColor": "#336699"}


class Provider:
    """Two guilds whose members the test changes by injecting events on A."""

    @hookimpl
    def get_server_data(self):
        return {
            "1": {"id": "one", "name": "One", "is_default": True},
            "2": {"id": "two", "name": "Two"},
        }

    @hookimpl
    def get_user_data(self, server_id):
        if server_id == "1":
            return {str(uid): user(str(uid), f"member{uid}") for uid in range(10, 20)}
        if server_id == "2":
            return {"20": user("20", "twenty")}
        return None

    @hookimpl
    def get_client_id(self, server_id):
        return f"client-{server_id}"


@contextlib.asynccontextmanager
async def publisher(url: str, prefix: str):
    plugin = RedisPlugin(RedisConfig(url=url, role="publisher", prefix=prefix))
    plugins = [("provider", Provider()), ("dback-redis", plugin)]
    async with running_server(plugins, environ={"DBACK_PLUGINS": ""}) as server:
        yield server, plugin


async def wait_until(condition, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not await condition():
        if loop.time() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


async def frames_until_sentinel(client: Client, text: str) -> list[dict]:
    """Every frame up to and including the chat message ``text``."""
    frames = []
    while True:
        frame = await client.recv(WAIT)
        frames.append(frame)
        if frame["type"] == "message" and frame["data"]["message"] == text:
            return frames


async def world_matches(client: Client, shown: dict, server, key: str) -> None:
    """Wait until what ``client`` shows of guild ``key`` (``shown``, kept up to date in
    place) equals A's current members.

    The viewer's world is its last ``server-join`` with every later presence applied, as
    the d-zone client keeps it: whether a change arrives live or through a resync's new
    world is a race the test must not depend on.
    """
    expected = json.loads(json.dumps(server.directory.guilds[key].users))
    while shown != expected:
        frame = await client.recv(WAIT)
        if frame["type"] == "server-join":
            shown.clear()
            shown.update(frame["data"]["users"])
        elif frame["type"] == "presence" and frame.get("server") == key:
            data = dict(frame["data"])
            if data.pop("delete", False):
                shown.pop(data["uid"], None)
            else:
                shown[data["uid"]] = data


async def test_three_processes_share_one_world_through_outages(namespace, start_dback):
    pub_url = await namespace.new_user("pub")
    edge_url = await namespace.new_user("edge")
    admin = namespace.admin
    async with (
        publisher(pub_url, namespace.prefix) as (a, plugin),
        BusRecorder(admin, f"{namespace.prefix}:events") as bus,
    ):
        await wait_until(lambda: admin.exists(f"{namespace.prefix}:servers"), "no snapshot written")
        b, c = await start_dback(edge_url), await start_dback(edge_url)
        async with (
            Client(b.url, timeout=WAIT) as on_b,
            Client(c.url, timeout=WAIT) as on_c,
            Client(c.url, timeout=WAIT) as on_c_two,
        ):
            assert on_b.server_list == json.loads(a.directory.server_list_frame)["data"]
            join_b = await on_b.join("one")
            await on_c.join("one")
            join_two = await on_c_two.join("two")
            assert join_b["data"]["users"] == a.directory.guilds["1"].users
            assert join_b["data"]["clientId"] == "client-1"
            assert join_two["data"]["users"] == {"20": user("20", "twenty")}
            assert "2" not in a.fanout.by_guild  # nobody watches guild two on A

            await a.publish(Presence("1", "11", "idle"), origin="provider")
            await a.publish(Presence("2", "20", "dnd"), origin="provider")
            await a.publish(Message("1", "10", "sentinel-1"), origin="provider")
            await a.publish(Message("2", "20", "sentinel-2"), origin="provider")
            for client, sentinel, uid, status in (
                (on_b, "sentinel-1", "11", "idle"),
                (on_c, "sentinel-1", "11", "idle"),
                (on_c_two, "sentinel-2", "20", "dnd"),
            ):
                frames = await frames_until_sentinel(client, sentinel)
                changes = [f for f in frames if f["type"] == "presence"]
                assert [(f["data"]["uid"], f["data"]["status"]) for f in changes] == [(uid, status)]
                assert sum(f["type"] == "message" for f in frames) == 1

            d = await start_dback(edge_url)
            async with Client(d.url, timeout=WAIT) as on_d:
                join_d = await on_d.join("one")
                assert join_d["data"]["users"]["11"]["status"] == "idle"
                assert join_d["data"]["users"] == a.directory.guilds["1"].users
                viewers = (on_b, on_c, on_d)
                # All three are in step here; each keeps its own copy from now on.
                shown = {client: dict(join_d["data"]["users"]) for client in viewers}

                # The edges lose Redis; A changes the world meanwhile.
                await namespace.lock_out("edge")
                await a.publish(Presence("1", "12", "dnd"), origin="provider")
                await a.publish(Presence("1", "99", "online", "newcomer"), origin="provider")
                await namespace.let_in("edge")
                for client in viewers:
                    await world_matches(client, shown[client], a, "1")
                assert a.directory.guilds["1"].users["99"]["username"] == "newcomer"

                # The publisher loses Redis; its changes reach the edges after recovery.
                await namespace.lock_out("pub")
                await a.publish(Presence("1", "13", "offline"), origin="provider")
                await a.publish(Presence("1", "10", "delete", delete=True), origin="provider")
                await namespace.let_in("pub")
                for client in viewers:
                    await world_matches(client, shown[client], a, "1")

                # Only the subscriptions are killed; redis-py or the edge resubscribes.
                assert await namespace.kill(f"{namespace.prefix}:edge", kind="pubsub") == 3
                await a.publish(Presence("1", "14", "idle"), origin="provider")
                for client in viewers:
                    await world_matches(client, shown[client], a, "1")
                await a.publish(Message("1", "14", "sentinel-3"), origin="provider")
                for client in viewers:
                    frames = await frames_until_sentinel(client, "sentinel-3")
                    assert sum(f["type"] == "message" for f in frames) == 1

    senders = {envelope.sender for envelope in bus.seen}
    assert senders == {plugin.config.process_id}, "only the publisher may publish"
    sequence = [envelope.seq for envelope in bus.seen]
    assert sequence == sorted(set(sequence)), "a message was published twice"
