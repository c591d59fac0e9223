"""Exactly-once chat across every handover, with the real thing end to end.

Several ``dback serve`` processes in the ``auto`` role run the PostgreSQL plugin through a
private redis-server (no persistence), beside one pinned edge that is never elected; a
writer inserts chat rows and status changes into a database of the test's own at a steady
rate; a websocket viewer watches on every process.
Meanwhile the elected publisher is restarted with SIGTERM three times, SIGKILLed,
SIGKILLed together with Redis, paused past its lease, or cut off from Redis past it. Every
viewer must see each row exactly once, each sender's rows in order, never see a member's older
state after a newer one, and end with the members' statuses as PostgreSQL has them.

A viewer that watched from before the first row to the end must have seen every row; one
that joined a process started during the run (a restarted process) every row after the
first it saw; one whose process was stopped every row between the first and the last it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import pytest
from private_redis import PrivateRedis
from redis.asyncio import Redis

from dback_core.testing import Client
from tests.support.postgres_database import dsn_for, guild_database, guild_members, member_uid

pytestmark = pytest.mark.redis

log = logging.getLogger(__name__)

WAIT = 60.0
GUILD = "232769614004748288"
SENDERS = [member_uid(GUILD, n) for n in range(8)]
STATUSES = ["online", "idle", "dnd", "offline"]
#: Chat rows inserted per second, and one status change every this many rows.
RATE = 40.0
STATUS_EVERY = 4
LEASE = "2"
#: Rows written (2 s) after a late viewer joined by which it must be shown every row.
JOIN_SLACK = int(2 * RATE)


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """The DSN of a migrated database of this test's own with one guild and its senders."""
    async with guild_database("dback_once", GUILD, "Once", len(SENDERS)) as name:
        yield dsn_for(name)


@dataclass
class Written:
    message_id: int
    sender: str
    text: str


class Writer:
    """Inserts chat rows (and status changes) at ``RATE`` until stopped."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.rows: list[Written] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for n in itertools.count():
            sender = SENDERS[n % len(SENDERS)]
            text = f"{sender}:{n}"
            message_id = await self.connection.fetchval(
                "INSERT INTO messages (server_id, user_id, message) VALUES ($1, $2, $3) "
                "RETURNING message_id",
                GUILD,
                sender,
                text,
            )
            self.rows.append(Written(message_id, sender, text))
            if n % STATUS_EVERY == 0:
                # Each member in turn; its name carries the round, so a viewer can tell an
                # older presence from a newer one.
                change = n // STATUS_EVERY
                member, round_ = SENDERS[change % len(SENDERS)], change // len(SENDERS)
                await self.connection.execute(
                    "UPDATE users SET status = $1, username = $2 "
                    "WHERE server_id = $3 AND user_id = $4",
                    STATUSES[round_ % len(STATUSES)],
                    f"{member}#{round_}",
                    GUILD,
                    member,
                )
            await asyncio.sleep(max(0.0, started + (n + 1) / RATE - loop.time()))


@dataclass
class Viewer:
    """One websocket viewer of one process: every chat text it was shown, and its world."""

    process: object
    whole_run: bool
    #: Its process was stopped: it is judged up to the last row it saw.
    retired: bool = False
    #: Rows written when it joined: one that joined late must see every row from a moment
    #: after that (``JOIN_SLACK`` rows) at the latest.
    joined_row: int = 0
    texts: list[str] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)
    #: Per member, the newest round shown, and how often an older one was shown after it.
    rounds: dict[str, int] = field(default_factory=dict)
    regressions: int = 0
    client: Client | None = None
    task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self.client = Client(self.process.url, timeout=WAIT, max_queue=None)
        await self.client.__aenter__()
        joined = await self.client.join("default")
        self._world(joined["data"]["users"])
        self.task = asyncio.create_task(self._read())

    def _world(self, users: dict) -> None:
        self.statuses = {uid: user["status"] for uid, user in users.items()}
        for uid, user in users.items():
            self._shown(uid, user.get("username") or "")

    def _shown(self, uid: str, username: str) -> None:
        """Note the round of a member's state as shown; an older one than before is a
        presence shown out of order."""
        _, mark, tail = username.rpartition("#")
        round_ = int(tail) if mark and tail.isdigit() else -1
        if round_ < self.rounds.get(uid, -1):
            self.regressions += 1
        self.rounds[uid] = max(round_, self.rounds.get(uid, -1))

    async def _read(self) -> None:
        assert self.client is not None
        with contextlib.suppress(Exception):
            while True:
                frame = await self.client.recv(timeout=3600)
                kind = frame.get("type")
                if kind == "message":
                    self.texts.append(frame["data"]["message"])
                elif kind == "presence":
                    data = frame["data"]
                    if data.get("delete"):
                        self.statuses.pop(data["uid"], None)
                    else:
                        self.statuses[data["uid"]] = data["status"]
                        self._shown(data["uid"], data.get("username") or "")
                elif kind == "server-join":
                    self._world(frame["data"]["users"])
                elif kind == "user_data":
                    self._world(frame["users"])

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.__aexit__(None, None, None)


@dataclass
class Verdict:
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0

    def add(self, other: Verdict) -> None:
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.reordered += other.reordered


def judge(viewer: Viewer, rows: list[Written]) -> Verdict:
    """Lost, duplicated and reordered rows as ``viewer`` saw them."""
    order = {row.text: index for index, row in enumerate(rows)}
    seen = [text for text in viewer.texts if text in order]
    if viewer.whole_run:
        expected = rows
    else:
        first = min((order[text] for text in seen), default=len(rows))
        if not viewer.retired:
            first = min(first, viewer.joined_row + JOIN_SLACK)
        end = max((order[text] for text in seen), default=-1) + 1 if viewer.retired else None
        expected = rows[first:end]
    duplicated = len(seen) - len(set(seen))
    lost = len({row.text for row in expected} - set(seen))
    reordered = 0
    last: dict[str, int] = {}
    for text in seen:
        sender = rows[order[text]].sender
        if order[text] < last.get(sender, -1):
            reordered += 1
        last[sender] = max(order[text], last.get(sender, -1))
    return Verdict(lost, duplicated, reordered)


class Cluster:
    """The processes, a viewer on each, the writer, and the private Redis."""

    def __init__(self, start_dback, redis: PrivateRedis, dsn: str, writer: Writer) -> None:
        self.start_dback = start_dback
        self.redis = redis
        self.writer = writer
        self.dsn = dsn
        self.env = {
            "DBACK_PLUGINS": "dback-redis,dback-postgres",
            "DBACK_DISABLE_PLUGINS": "",
            "DBACK_POSTGRES_DSN": dsn,
            "DBACK_POSTGRES_RETRY_MAX": "0.5",
            "DBACK_REDIS_LEASE_SECONDS": LEASE,
        }
        self.processes: list = []
        self.viewers: list[Viewer] = []
        self.retired: list[Viewer] = []
        #: With ``own_users``, each process logs in to Redis as its own ACL user, which
        #: ``cut_off`` can lock out: a network cut between that process and Redis.
        self.own_users = False
        self.users: dict[object, str] = {}

    async def start(self, whole_run: bool, role: str = "auto") -> None:
        """One more process with a viewer: in the ``auto`` role, pinned as the publisher, or
        pinned as an ``edge``: a process that is never elected, without the PostgreSQL
        plugin, whose viewer watches from the first row to the last whatever happens to the
        others."""
        url, user = self.redis.url, f"process{len(self.users)}"
        if self.own_users:
            async with Redis.from_url(self.redis.url) as admin:
                await admin.execute_command(
                    "ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all"
                )
            url = url.replace("redis://", f"redis://{user}:pw@")
        env = {**self.env, "DBACK_PLUGINS": "dback-redis"} if role == "edge" else self.env
        process = await self.start_dback(url, role, **env)
        self.users[process] = user
        self.processes.append(process)
        viewer = Viewer(process, whole_run, joined_row=len(self.writer.rows))
        await viewer.open()
        self.viewers.append(viewer)

    async def publisher(self):
        """The process that holds the lease now (waits for the election)."""

        async def find():
            for process in self.processes:
                with contextlib.suppress(Exception):  # a paused process does not answer
                    detail = await asyncio.wait_for(process.redis_detail(), 1.0)
                    if "(publisher)" in detail or "role=publisher " in detail:
                        return process
            return None

        return await until(find, "no process is the publisher")

    async def cut_off(self, process, seconds: float) -> None:
        """Cut ``process`` off from Redis for ``seconds``, then let it back in."""
        user = self.users[process]
        async with Redis.from_url(self.redis.url) as admin:
            await admin.execute_command("ACL", "SETUSER", user, "off")
            await admin.execute_command("CLIENT", "KILL", "USER", user)
            await asyncio.sleep(seconds)
            await admin.execute_command("ACL", "SETUSER", user, "on")

    async def leave(self, process, how: int) -> None:
        """Stop ``process`` with signal ``how``; its viewer stops counting (but is judged)."""
        viewer = next(v for v in self.viewers if v.process is process)
        self.viewers.remove(viewer)
        viewer.whole_run = False
        viewer.retired = True
        self.retired.append(viewer)
        process.signal(how)
        await asyncio.to_thread(process.process.wait, 30)
        await viewer.close()
        self.processes.remove(process)

    async def settle(self) -> Verdict:
        """Stop writing, wait until every viewer has the last row, and judge them all."""
        await self.writer.stop()
        rows = self.writer.rows
        last = rows[-1].text

        async def everywhere():
            return all(last in viewer.texts for viewer in self.viewers) or None

        with contextlib.suppress(AssertionError):
            await until(everywhere, "")
        await asyncio.sleep(2.0)  # late duplicates would arrive now
        total = Verdict()
        for viewer in [*self.viewers, *self.retired]:
            verdict = judge(viewer, rows)
            log.info(
                "viewer of %s (%s): %d rows seen, %s",
                viewer.process.log_path.name,
                "whole run" if viewer.whole_run else "part",
                len(viewer.texts),
                verdict,
            )
            total.add(verdict)
        return total

    async def presence_matches(self) -> None:
        """Every viewer's world, and a fresh viewer's on every process, has PostgreSQL's
        statuses; no viewer was shown a member's older state after a newer one."""
        members = await guild_members(self.dsn, GUILD)
        expected = {uid: status for uid, (status, _) in members.items()}

        async def converged():
            return all(viewer.statuses == expected for viewer in self.viewers) or None

        with contextlib.suppress(AssertionError):
            await until(converged, "")
        for viewer in self.viewers:
            assert viewer.statuses == expected, viewer.process.log_path.name
        regressions = sum(viewer.regressions for viewer in [*self.viewers, *self.retired])
        log.info("presences shown out of order: %d", regressions)
        assert regressions == 0
        for process in self.processes:
            async with Client(process.url, timeout=WAIT) as fresh:
                joined = await fresh.join("default")
                statuses = {uid: user["status"] for uid, user in joined["data"]["users"].items()}
                assert statuses == expected, process.log_path.name

    async def counted(self) -> tuple[float, float]:
        """Chat duplicates dropped and chat counted as lost, summed over the live
        processes' ``/metrics``."""
        duplicates = lost = 0.0
        for process in self.processes:
            for line in (await metrics(process)).splitlines():
                if line.startswith("dback_chat_duplicates_total "):
                    duplicates += float(line.split()[-1])
                elif line.startswith("dback_chat_lost_total{"):
                    lost += float(line.split()[-1])
        return duplicates, lost

    async def close(self) -> None:
        for viewer in [*self.viewers, *self.retired]:
            await viewer.close()


async def metrics(process) -> str:
    """The text of a process's ``/metrics``."""
    host, port = process.url.removeprefix("ws://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return raw.partition(b"\r\n\r\n")[2].decode()


def logged_at(process, pattern: str) -> tuple[datetime, str] | None:
    """When ``process`` last logged a line matching ``pattern``, and the line."""
    found = None
    for line in process.log_path.read_text().splitlines():
        if re.search(pattern, line):
            found = (datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f"), line)
    return found


def lease_of(process) -> int:
    """The lease number ``process`` last took (0: none)."""
    found = logged_at(process, r"this process is the publisher now \(lease \d+\)")
    return int(re.findall(r"lease (\d+)", found[1])[-1]) if found else 0


async def until(probe: Callable[[], Awaitable], what: str, timeout: float = WAIT):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await probe()
        if found:
            return found
        assert loop.time() < deadline, what
        await asyncio.sleep(0.05)


async def assert_exactly_once(running: Cluster, what: str) -> None:
    """Every viewer saw every row once, in order; no process counted chat as lost."""
    verdict = await running.settle()
    rows = len(running.writer.rows)
    duplicates, lost = await running.counted()
    log.info(
        "%s: %d rows written; %s; /metrics: %d duplicates dropped, %d lost",
        what,
        rows,
        verdict,
        duplicates,
        lost,
    )
    assert verdict == Verdict(0, 0, 0), f"{what}: {verdict} of {rows} rows"
    assert lost == 0


@pytest.fixture
def scenario(start_dback, database):
    """``scenario(what, processes=3, own_users=False, role="auto")``: a cluster on the test's
    database for the block to hurt, with ``processes`` in ``role`` - electable, or one pinned
    ``publisher`` - (``own_users``: each logs in to Redis as its own ACL user). Once the
    block is done, every viewer must have seen every row once and in order and hold
    PostgreSQL's world, and no process counted chat as lost."""

    @contextlib.asynccontextmanager
    async def run(
        what: str, processes: int = 3, own_users: bool = False, role: str = "auto"
    ) -> AsyncIterator[Cluster]:
        redis = PrivateRedis()
        await redis.start()
        writer = Writer(await asyncpg.connect(database))
        running = Cluster(start_dback, redis, database, writer)
        running.own_users = own_users
        try:
            for _ in range(processes):
                await running.start(whole_run=True, role=role)
            await running.start(whole_run=True, role="edge")
            await running.publisher()
            writer.start()
            await asyncio.sleep(2.0)
            yield running
            await assert_exactly_once(running, what)
            await running.presence_matches()
        finally:
            await running.close()
            with contextlib.suppress(Exception):
                await writer.stop()
            await writer.connection.close()
            redis.kill()

    return run


async def test_three_rolling_restarts_lose_and_repeat_no_chat(scenario):
    async with scenario("three rolling restarts") as running:
        for _ in range(3):
            publisher = await running.publisher()
            await running.leave(publisher, signal.SIGTERM)
            elected = await running.publisher()
            stopping = logged_at(publisher, "shutting down")
            taken = logged_at(elected, "this process is the publisher now")
            assert stopping is not None and taken is not None
            log.info(
                "SIGTERM: next publisher elected %.0f ms after the old one began to stop",
                (taken[0] - stopping[0]).total_seconds() * 1000,
            )
            await running.start(whole_run=False)
            await asyncio.sleep(2.0)


async def test_a_sigkilled_publisher_loses_and_repeats_no_chat(scenario):
    async with scenario("publisher SIGKILLed") as running:
        await running.leave(await running.publisher(), signal.SIGKILL)
        await running.publisher()
        await running.start(whole_run=False)
        await asyncio.sleep(3.0)


async def test_redis_killed_during_an_election_loses_and_repeats_no_chat(scenario):
    async with scenario("publisher and Redis killed") as running:
        killed = await running.publisher()
        await running.leave(killed, signal.SIGKILL)
        running.redis.kill()  # forgets everything: lease, fence, positions, chat history
        await asyncio.sleep(1.0)
        await running.redis.start()
        elected = await running.publisher()
        # The fence went on from the highest seen, not from 1 again.
        assert lease_of(elected) > lease_of(killed)
        await asyncio.sleep(3.0)


async def test_a_publisher_paused_past_its_lease_loses_and_repeats_no_chat(scenario):
    async with scenario("publisher paused past its lease") as running:
        paused = await running.publisher()
        paused.signal(signal.SIGSTOP)
        await asyncio.sleep(2 * float(LEASE))

        async def another():
            found = await running.publisher()
            return found if found is not paused else None

        await until(another, "nobody took over from the paused publisher")
        paused.signal(signal.SIGCONT)
        await asyncio.sleep(4.0)


async def test_a_publisher_cut_off_from_redis_loses_and_repeats_no_chat(scenario):
    async with scenario("publisher cut off from Redis past its lease", own_users=True) as running:
        cut = await running.publisher()
        await running.cut_off(cut, 2.5 * float(LEASE))
        await asyncio.sleep(4.0)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_a_restarted_pinned_publisher_loses_and_repeats_no_chat(scenario, how):
    """A pinned publisher restarted (a deploy, a crash): the rows written while no process
    published reach every viewer once it is back - it resumes after the positions in
    ``P:positions`` instead of starting from now - and none twice."""
    async with scenario(f"pinned publisher restarted ({how.name})", 1, role="publisher") as running:
        for _ in range(2):
            await running.leave(await running.publisher(), how)
            await asyncio.sleep(2.0)  # rows written while nobody publishes
            await running.start(whole_run=False, role="publisher")
            await asyncio.sleep(2.0)


@pytest.mark.parametrize("processes", [1, 3])
async def test_redis_restarted_empty_while_chat_flows_loses_and_repeats_no_chat(
    scenario, processes
):
    """Redis killed while chat flows and started again empty, once after the lease ran out
    and once within it. Through the long outage the publisher shows the rows to its own
    viewers, then steps down: the next publisher - the same process when it is the only one
    that can be elected - resumes after them, so they must reach the other processes from
    the process that showed them. After the short one, the publisher finds its lease gone
    in an empty Redis and serves as an edge from a snapshot not written yet: its viewers
    must keep their world (and so their chat) until one is."""
    async with scenario(
        f"Redis restarted empty, {processes} electable", processes=processes
    ) as running:
        for outage in (1.5 * float(LEASE), 0.3, 1.5 * float(LEASE)):
            await running.publisher()
            running.redis.kill()  # forgets everything: lease, fence, positions, chat history
            await asyncio.sleep(outage)
            await running.redis.start()
            await running.publisher()
            await asyncio.sleep(3.0)
