"""Nothing lost on the bus: an edge's own d-back API broadcasts reach every process, and chat
survives an edge's disconnection and a Redis restart - each message once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest
from private_redis import PrivateRedis
from redis.asyncio import Redis

from dback_core import hookimpl
from dback_core.plugin.events import Message, Presence
from dback_core.testing import Client, running_server
from dback_redis.config import RedisConfig
from dback_redis.plugin import RedisPlugin

pytestmark = pytest.mark.redis

log = logging.getLogger(__name__)
WAIT = 30.0


class Provider:
    @hookimpl
    def get_server_data(self):
        return {"1": {"id": "one", "name": "One"}}

    @hookimpl
    def get_user_data(self, server_id):
        if server_id != "1":
            return None
        return {uid: {"uid": uid, "username": f"user{uid}", "status": "online"} for uid in "56"}


def plugin(url: str, prefix: str, role: str) -> tuple[str, RedisPlugin]:
    return ("dback-redis", RedisPlugin(RedisConfig(url=url, role=role, prefix=prefix)))


async def wait_until(predicate, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not await predicate():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.05)


async def chat_seen(viewer: Client, count: int) -> list[str]:
    """The next ``count`` chat texts the viewer sees (presences and the like skipped)."""
    texts = []
    while len(texts) < count:
        frame = await viewer.recv_type("message", timeout=WAIT)
        texts.append(frame["data"]["message"])
    return texts


async def nothing_more(viewer: Client, seconds: float = 1.0) -> list[dict]:
    """Whatever chat still arrives within ``seconds`` (expected: none)."""
    extra = []
    with contextlib.suppress(TimeoutError):
        while True:
            extra.append(await viewer.recv_type("message", timeout=seconds))
    return extra


@contextlib.asynccontextmanager
async def publisher_and_edges(url_a: str, url_edges: list[str], prefix: str) -> AsyncIterator:
    """Publisher A with a provider, and one edge server per URL, all in this process."""
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            running_server(
                [("provider", Provider()), plugin(url_a, prefix, "publisher")],
                environ={"DBACK_PLUGINS": ""},
            )
        )
        probe = Redis.from_url(url_a, decode_responses=True)
        stack.push_async_callback(probe.aclose)
        await wait_until(lambda: probe.exists(f"{prefix}:servers"), "no snapshot written")
        edges = []
        for url in url_edges:
            edge = plugin(url, prefix, "edge")
            server = await stack.enter_async_context(
                running_server([edge], environ={"DBACK_PLUGINS": ""})
            )
            edges.append((server, edge[1]))
        yield a, edges


async def test_an_edges_own_broadcasts_reach_every_process_and_the_snapshot(namespace):
    url = await namespace.new_user("bus")
    async with publisher_and_edges(url, [url, url], namespace.prefix) as (a, edges):
        (b, _), (c, _) = edges
        async with Client(a) as on_a, Client(b) as on_b, Client(c) as on_c:
            for viewer in (on_a, on_b, on_c):
                await viewer.join("one")
            # What WebSocketServer.broadcast_presence / broadcast_message do on edge B.
            await b.publish(Presence("1", "5", "dnd"))
            await b.publish(Message("1", "6", "hello from an edge"))
            for viewer in (on_a, on_c):
                presence = await viewer.recv_type("presence", timeout=WAIT)
                assert (presence["data"]["uid"], presence["data"]["status"]) == ("5", "dnd")
                assert await chat_seen(viewer, 1) == ["hello from an edge"]
            assert await chat_seen(on_b, 1) == ["hello from an edge"]
            for viewer in (on_a, on_b, on_c):
                assert await nothing_more(viewer) == []

            async def stored() -> bool:
                raw = await namespace.admin.hget(f"{namespace.prefix}:users:1", "5")
                return raw is not None and '"dnd"' in raw

            await wait_until(stored, "the publisher did not write the edge's change")
            # A process started later sees it too: it is in the snapshot.
            late = plugin(url, namespace.prefix, "edge")
            async with running_server([late], environ={"DBACK_PLUGINS": ""}) as d:
                async with Client(d) as on_d:
                    joined = await on_d.join("one")
                    assert joined["data"]["users"]["5"]["status"] == "dnd"


async def test_chat_sent_while_an_edge_is_cut_off_is_replayed_once_in_order(namespace):
    pub_url = await namespace.new_user("pub")
    edge_url = await namespace.new_user("edge")
    async with publisher_and_edges(pub_url, [edge_url], namespace.prefix) as (a, edges):
        ((b, edge),) = edges
        async with Client(b) as on_b:
            await on_b.join("one")
            await a.publish(Message("1", "5", "before"), origin="provider")
            assert await chat_seen(on_b, 1) == ["before"]
            await namespace.lock_out("edge")
            await asyncio.sleep(0.3)
            sent = [f"during {n}" for n in range(20)]
            for text in sent:
                await a.publish(Message("1", "5", text), origin="provider")
            await namespace.let_in("edge")
            assert await chat_seen(on_b, 20) == sent
            await a.publish(Message("1", "6", "after"), origin="provider")
            assert await chat_seen(on_b, 1) == ["after"]
            assert await nothing_more(on_b) == []
            assert edge.role.resyncs >= 1


async def test_chat_survives_a_redis_restart_during_a_burst():
    redis = PrivateRedis()
    await redis.start()
    try:
        async with publisher_and_edges(redis.url, [redis.url], "restart") as (a, edges):
            ((b, _),) = edges
            async with Client(a) as on_a, Client(b) as on_b:
                await on_a.join("one")
                await on_b.join("one")
                sent = []
                loop = asyncio.get_running_loop()
                for n in range(150):
                    if n == 50:
                        redis.kill()
                        killed_at = loop.time()
                    if n == 100:
                        await redis.start()
                        log.info("Redis was down for %.2f s", loop.time() - killed_at)
                    text = f"burst {n}"
                    sent.append(text)
                    await a.publish(Message("1", "5", text), origin="provider")
                    await asyncio.sleep(0.01)
                assert await chat_seen(on_a, 150) == sent
                seen = await chat_seen(on_b, 150)
                extra = await nothing_more(on_b, 2.0)
                lost = len(set(sent) - set(seen))
                duplicated = len(seen) + len(extra) - len(set(seen))
                log.info("Redis restart in a chat burst: lost %d, duplicated %d", lost, duplicated)
                assert seen == sent and extra == []
    finally:
        redis.kill()
