"""A paused publisher steps down when it wakes, and runs for election again: two ``auto``
processes of ``dback serve`` on the real PostgreSQL plugin and the real Redis.

The publisher is SIGSTOPped past its lease; the other takes over; on SIGCONT the woken one
must step down at once - its PostgreSQL listener silenced, nothing more published under its
old lease, no chat delivered twice to anyone - and later take over in its turn when the new
publisher is paused, within the lease (not never, as when its step-down hung).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest
from bus_recorder import BusRecorder
from dback_process import other_plugins
from private_redis import PrivateRedis

from dback_core.testing import Client
from tests.support.postgres_database import dsn_for, guild_database, member_uid

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

log = logging.getLogger(__name__)
WAIT = 30.0
LEASE = 2.0
GUILD = "232769614004748288"
MEMBERS = [member_uid(GUILD, index) for index in range(3)]


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """The DSN of a fresh, migrated database with one guild; dropped afterwards."""
    async with guild_database("dback_stepdown", GUILD, "D-Base", len(MEMBERS)) as name:
        yield dsn_for(name)


def on_postgres(dsn: str) -> dict[str, str]:
    """The environment of an ``auto`` process whose provider is the PostgreSQL plugin."""
    return {
        "DBACK_PLUGINS": "dback-redis,dback-postgres",
        "DBACK_DISABLE_PLUGINS": other_plugins(("dback-redis", "dback-postgres")),
        "DBACK_POSTGRES_DSN": dsn,
        "DBACK_POSTGRES_RETRY_MAX": "0.5",
        "DBACK_REDIS_LEASE_SECONDS": str(LEASE),
    }


async def role_of(process) -> str:
    detail = await process.redis_detail()
    return "publisher" if "(publisher)" in detail else "edge" if "(edge)" in detail else detail


async def until_role(process, role: str, what: str) -> float:
    """Wait until ``process`` says it is ``role``; the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while await role_of(process) != role:
        assert loop.time() - started < WAIT, what
        await asyncio.sleep(0.05)
    return loop.time() - started


class Viewer:
    """A client on one process that records every chat text it is shown, in order."""

    def __init__(self, client: Client):
        self.client = client
        self.chat: list[str] = []

    async def read(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                frame = await self.client.recv(timeout=3600)
                if frame.get("type") == "message":
                    self.chat.append(frame["data"]["message"])

    def duplicates(self) -> dict[str, int]:
        return {text: n for text, n in Counter(self.chat).items() if n > 1}


async def write_chat(dsn: str, written: list[str], stop: asyncio.Event) -> None:
    """Chat into PostgreSQL every 50 ms, as a d-zone client's bot would, until ``stop``."""
    connection = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            text = f"chat {len(written)}"
            await connection.execute(
                "INSERT INTO messages (server_id, user_id, message) VALUES ($1, $2, $3)",
                GUILD,
                MEMBERS[len(written) % len(MEMBERS)],
                text,
            )
            written.append(text)
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def test_a_woken_publisher_steps_down_at_once_and_runs_again(
    namespace, start_dback, database
):
    url = await namespace.new_user("auto")
    first = await start_dback(url, "auto", **on_postgres(database))
    second = await start_dback(url, "auto", **on_postgres(database))
    assert [await role_of(first), await role_of(second)] == ["publisher", "edge"]
    loop = asyncio.get_running_loop()
    written: list[str] = []
    stop_writing = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        recorder = await stack.enter_async_context(
            BusRecorder(namespace.admin, f"{namespace.prefix}:events")
        )
        viewers = []
        for process in (first, second):
            client = await stack.enter_async_context(Client(process.url, timeout=WAIT))
            await client.join(GUILD)
            viewers.append(Viewer(client))
        readers = [asyncio.create_task(viewer.read()) for viewer in viewers]
        writer = asyncio.create_task(write_chat(database, written, stop_writing))
        stack.callback(writer.cancel)
        stack.push_async_callback(_cancelled, readers)
        await asyncio.sleep(1.0)  # chat flows through the first publisher

        first.signal(signal.SIGSTOP)
        paused_at = loop.time()
        await until_role(second, "publisher", "nobody took over from the paused publisher")
        taken_over = loop.time() - paused_at
        await asyncio.sleep(1.0)  # chat flows through the second; the first is still paused
        first.signal(signal.SIGCONT)
        stepped_down = await until_role(first, "edge", "the woken publisher did not step down")
        assert "this process is an edge now" in first.log_path.read_text()
        await asyncio.sleep(2 * LEASE)  # the woken one settles as an edge and runs again

        second.signal(signal.SIGSTOP)
        paused_at = loop.time()
        await until_role(first, "publisher", "the process that stepped down never ran again")
        taken_back = loop.time() - paused_at
        second.signal(signal.SIGCONT)
        await until_role(second, "edge", "the second woken publisher did not step down")
        await asyncio.sleep(1.0)
        stop_writing.set()
        await writer
        await asyncio.sleep(2.0)  # the last chat reaches every viewer

    log.info(
        "lease %.0f s: first takeover after %.2f s, woken publisher stepped down after %.2f s, "
        "takeover by the process that stepped down after %.2f s; chat seen by the viewers "
        "of the two processes: %s of %d written",
        LEASE,
        taken_over,
        stepped_down,
        taken_back,
        [len(set(viewer.chat)) for viewer in viewers],
        len(written),
    )
    # The paused publisher, awake, said nothing more under its old lease: every message on
    # the channel carries a lease at least as high as every one before it.
    highest = 0
    for envelope in recorder.seen:
        if envelope.fence is None:
            continue
        assert envelope.fence >= highest, (
            f"{envelope.sender} published under lease {envelope.fence} after lease {highest}"
        )
        highest = envelope.fence
    assert len({e.fence for e in recorder.seen if e.fence is not None}) >= 3
    # Its PostgreSQL listener was silenced at once: no viewer got any chat twice.
    for viewer in viewers:
        assert viewer.duplicates() == {}
    # Before the fix, it never stepped down and nobody took over from the second one.
    assert taken_back < LEASE + 2.0, f"the next takeover took {taken_back:.2f}s"


async def _cancelled(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_publisher_that_cannot_renew_steps_down_at_its_deadline_without_redis(
    start_dback,
):
    """Redis paused (SIGSTOP: every call hangs until the socket times out): the publisher
    cannot renew, and must not wait for Redis to say so - it steps down when its own
    deadline passes, while Redis is still paused."""
    redis = PrivateRedis()
    await redis.start()
    try:
        mock = {"DBACK_PLUGINS": "dback-redis,dback-mock", "DBACK_MOCK_INTERVAL": "0.05"}
        process = await start_dback(redis.url, "auto", DBACK_REDIS_LEASE_SECONDS=str(LEASE), **mock)
        assert await role_of(process) == "publisher"
        loop = asyncio.get_running_loop()
        assert redis.process is not None
        redis.process.send_signal(signal.SIGSTOP)
        paused_at = loop.time()
        try:
            while await role_of(process) != "edge" and loop.time() - paused_at < LEASE + 1:
                await asyncio.sleep(0.05)
            stepped_down = loop.time() - paused_at
            role = await role_of(process)
        finally:
            redis.process.send_signal(signal.SIGCONT)
        log.info("Redis paused: the publisher stepped down after %.2f s", stepped_down)
        # A renewal that hangs takes the socket timeout (3 s) to fail: longer than this.
        assert role == "edge", f"still {role} {stepped_down:.1f}s after Redis paused"
        assert "lease ran out unrenewed" in process.log_path.read_text()
        await until_role(process, "publisher", "it never ran for election again")
    finally:
        redis.kill()
