"""The ``auto`` role over real ``dback serve`` processes and the real Redis: exactly one
process publishes; when it is killed (SIGKILL) or paused (SIGSTOP) another takes over and
viewers everywhere see live changes again; a paused publisher that wakes up is fenced off
and steps down; messages of a former publisher are ignored."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import pytest
from bus_recorder import BusRecorder
from redis.asyncio import Redis

from dback_core.plugin.events import Message, Presence
from dback_core.testing import Client, running_server
from dback_redis.codec import encode
from dback_redis.config import RedisConfig
from dback_redis.election import Lease
from dback_redis.plugin import RedisPlugin
from dback_redis.snapshot import Keys

pytestmark = pytest.mark.redis

log = logging.getLogger(__name__)
WAIT = 30.0
UNBOUNDED = {"max_queue": None}
#: The seeded mock as every process's provider; it runs only where the lease is.
AUTO = {
    "DBACK_PLUGINS": "dback-redis,dback-mock",
    "DBACK_MOCK_SEED": "5",
    "DBACK_MOCK_INTERVAL": "0.05",
    "DBACK_REDIS_LEASE_SECONDS": "2",
}


async def roles(processes) -> list[str]:
    """Each process's current role, as ``/api/plugins`` shows it."""
    details = [await process.redis_detail() for process in processes]
    return ["publisher" if "(publisher)" in d else "edge" if "(edge)" in d else d for d in details]


async def until(condition, what: str) -> float:
    """Wait for ``condition``; the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not await condition():
        assert loop.time() - started < WAIT, what
        await asyncio.sleep(0.05)
    return loop.time() - started


async def live_change(client: Client) -> dict:
    """The next presence or chat frame."""
    return await client.recv_type("presence", "message", timeout=WAIT)


async def test_one_publishes_and_another_takes_over_when_it_is_killed(namespace, start_dback):
    url = await namespace.new_user("auto")
    processes = [await start_dback(url, "auto", **AUTO) for _ in range(3)]
    assert sorted(await roles(processes)) == ["edge", "edge", "publisher"]
    publisher = processes[(await roles(processes)).index("publisher")]
    others = [process for process in processes if process is not publisher]
    async with contextlib.AsyncExitStack() as stack:
        viewers = [
            await stack.enter_async_context(Client(p.url, timeout=WAIT, **UNBOUNDED))
            for p in others
        ]
        for viewer in viewers:
            await viewer.join("default")
            await live_change(viewer)  # the publisher's mock reaches the edges
        publisher.signal(signal.SIGKILL)
        loop = asyncio.get_running_loop()
        killed_at = loop.time()

        async def one_new_publisher() -> bool:
            return sorted(await roles(others)) == ["edge", "publisher"]

        elected = await until(one_new_publisher, "no process took over")
        for viewer in viewers:
            # Frames already on their way from the old publisher are drained first.
            await viewer.wait_for(lambda frame: frame["type"] == "server-join", timeout=WAIT)
            await live_change(viewer)
        live_again = loop.time() - killed_at
        log.info(
            "publisher SIGKILLed: new publisher elected after %.2f s, live changes on every "
            "process after %.2f s (lease 2 s)",
            elected,
            live_again,
        )


async def test_a_paused_publisher_is_fenced_off_and_steps_down(namespace, start_dback):
    url = await namespace.new_user("auto")
    first = await start_dback(url, "auto", **AUTO)
    second = await start_dback(url, "auto", **AUTO)
    assert await roles([first, second]) == ["publisher", "edge"]
    channel = f"{namespace.prefix}:events"
    async with BusRecorder(namespace.admin, channel) as recorder:
        async with Client(second.url, timeout=WAIT, **UNBOUNDED) as on_second:
            await on_second.join("default")
            await live_change(on_second)  # the first publisher is on the air
            first.signal(signal.SIGSTOP)
            paused = await until(
                lambda: _is(second, "publisher"), "the edge did not take over the lease"
            )
            log.info("publisher SIGSTOPped: the other process took over after %.2f s", paused)
            first.signal(signal.SIGCONT)
            stepped_down = await until(
                lambda: _is(first, "edge"), "the woken one did not step down"
            )
            log.info("the woken publisher stepped down after %.2f s", stepped_down)
            async with Client(first.url, timeout=WAIT, **UNBOUNDED) as on_first:
                await on_first.join("default")
                await live_change(on_first)  # it shows the new publisher's changes
            await live_change(on_second)
    fenced = [
        (envelope.sender, envelope.fence)
        for envelope in recorder.seen
        if envelope.fence is not None
    ]
    assert len({fence for _, fence in fenced}) >= 2, "the recorder did not see both publishers"
    highest = 0
    for sender, fence in fenced:
        assert fence >= highest, f"{sender} published under lease {fence} after lease {highest}"
        highest = fence


async def _is(process, role: str) -> bool:
    return f"(role=auto ({role})" in f"({await process.redis_detail()}"


async def test_messages_of_a_former_publisher_are_ignored(namespace):
    url = await namespace.new_user("auto")
    plugin = RedisPlugin(RedisConfig(url=url, role="edge", prefix=namespace.prefix))
    admin, channel = namespace.admin, f"{namespace.prefix}:events"
    await admin.set(
        f"{namespace.prefix}:servers", '{"1": {"id": "one", "name": "One", "is_default": true}}'
    )
    await admin.hset(f"{namespace.prefix}:users:1", "5", '{"uid": "5", "username": "five"}')
    async with running_server([("dback-redis", plugin)], environ={"DBACK_PLUGINS": ""}) as edge:
        async with Client(edge, timeout=WAIT) as viewer:
            await viewer.join("one")
            await admin.publish(channel, encode(Message("1", "5", "new"), "b", 1, fence=7))
            await admin.publish(channel, encode(Message("1", "5", "stale"), "a", 9, fence=6))
            await admin.publish(channel, encode(Message("1", "5", "newer"), "b", 2, fence=7))
            first = await viewer.recv_type("message")
            second = await viewer.recv_type("message")
            assert [first["data"]["message"], second["data"]["message"]] == ["new", "newer"]


async def test_the_fence_stays_monotonic_when_redis_forgets_it(namespace):
    url = await namespace.new_user("fence")
    redis = Redis.from_url(url, decode_responses=True)
    keys = Keys(namespace.prefix)
    first, second = Lease(redis, keys, "first", 2.0), Lease(redis, keys, "second", 2.0)
    try:
        assert await first.acquire() == 1
        await first.release()
        second.saw(41)  # a fence this process saw on the bus
        assert await second.acquire() == 42
        await second.release()
        # Redis restarted without persistence: the fence is gone, but not from memory.
        await redis.delete(keys.fence, keys.lease)
        assert await first.acquire() == 2  # above its own 1, as far as it knows
        await first.release()
        await redis.delete(keys.fence)
        assert await second.acquire() == 43
    finally:
        await redis.aclose()


async def test_a_presence_the_snapshot_already_holds_is_not_shown_after_it(namespace):
    url = await namespace.new_user("asof")
    plugin = RedisPlugin(RedisConfig(url=url, role="edge", prefix=namespace.prefix))
    admin, channel = namespace.admin, f"{namespace.prefix}:events"
    await admin.set(
        f"{namespace.prefix}:servers", '{"1": {"id": "one", "name": "One", "is_default": true}}'
    )
    # The publisher "b" wrote member 5 as dnd with its message 10: the snapshot holds it.
    await admin.hset(
        f"{namespace.prefix}:users:1", "5", '{"uid": "5", "username": "five", "status": "dnd"}'
    )
    await admin.set(f"{namespace.prefix}:version", "7:10:b")
    async with running_server([("dback-redis", plugin)], environ={"DBACK_PLUGINS": ""}) as edge:
        async with Client(edge, timeout=WAIT) as viewer:
            joined = await viewer.join("one")
            assert joined["data"]["users"]["5"]["status"] == "dnd"
            # Messages 9 and 10 were still on their way when the edge read the snapshot.
            for seq, status in ((9, "online"), (10, "dnd"), (11, "idle")):
                presence = Presence("1", "5", status, "five")
                await admin.publish(channel, encode(presence, "b", seq, fence=7))
            shown = await viewer.recv_type("presence")
            assert shown["data"]["status"] == "idle"
