"""Redis behind Sentinel, with real processes: a master, a replica and three sentinels of the
test's own, three ``dback serve`` processes in the ``auto`` role with PostgreSQL as the
provider, and a viewer on each. The master is SIGKILLed while chat and status changes flow,
and later the master that replaced it: after each failover every process is live again, and
every viewer ends with each chat message once, in order, and with PostgreSQL's world. A
process started while every sentinel is down says so and recovers; the failover bench
still runs."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest
from dback_process import DbackProcess
from sentinel_cluster import MASTER_NAME, SentinelCluster, until

from dback_core.testing import Client
from tests.support.postgres_database import dsn_for, guild_database, member_uid

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

log = logging.getLogger(__name__)

WAIT = 60.0
GUILD = "232769614004748288"
MEMBERS = [member_uid(GUILD, index) for index in range(8)]
STATUSES = ("online", "idle", "dnd", "offline")
#: The sentinels' own password: never shown by a process, whichever setting carries it.
SENTINEL_PASSWORD = "s3nt1nel pass@word"
#: Seconds between two rows the writer inserts (a chat message, every third a status).
PACE = 0.05


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL database with one guild; its DSN. Dropped afterwards."""
    async with guild_database("dback_sentinel", GUILD, "Sentinel", len(MEMBERS)) as name:
        yield dsn_for(name)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[SentinelCluster]:
    """The cluster's servers, not started yet; all killed after the test."""
    servers = SentinelCluster(tmp_path / "redis", sentinel_password=SENTINEL_PASSWORD)
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def start_serving(tmp_path: Path, database: str, cluster: SentinelCluster):
    """Start ``dback serve`` processes on the cluster and ``database``; stopped after."""
    started: list[DbackProcess] = []
    prefix = f"sentinel{uuid.uuid4().hex[:6]}"

    async def start(**settings: str) -> DbackProcess:
        process = DbackProcess(
            prefix,
            f"redis://{MASTER_NAME}/0",
            "auto",
            tmp_path / f"dback{len(started)}.log",
            DBACK_PLUGINS="dback-redis,dback-postgres",
            DBACK_DISABLE_PLUGINS="",
            DBACK_REDIS_LEASE_SECONDS="6",
            DBACK_POSTGRES_DSN=database,
            DBACK_POSTGRES_RETRY_MAX="0.5",
            **(
                settings
                or {
                    "DBACK_REDIS_SENTINELS": cluster.addresses,
                    "DBACK_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
                }
            ),
        )
        started.append(process)
        await process.ready(WAIT)
        return process

    yield start
    for process in started:
        process.stop()


@dataclass
class Viewer:
    """A WebSocket viewer of one process: the chat it saw and the world it holds."""

    name: str
    client: Client
    chat: list[str] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)
    #: The loop time of every chat message and presence received.
    arrivals: list[float] = field(default_factory=list)
    joined: bool = False

    async def watch(self) -> None:
        joined = await self.client.join(GUILD)
        self.joined = True
        self.statuses = {uid: user["status"] for uid, user in joined["data"]["users"].items()}
        loop = asyncio.get_running_loop()
        while True:
            frame = await self.client.recv(None)
            data = frame.get("data", {})
            if frame["type"] == "message":
                self.chat.append(data["message"])
            elif frame["type"] == "presence":
                if data.get("delete"):
                    self.statuses.pop(data["uid"], None)
                else:
                    self.statuses[data["uid"]] = data["status"]
            elif frame["type"] == "server-join":
                self.statuses = {uid: u["status"] for uid, u in data["users"].items()}
            else:
                continue
            self.arrivals.append(loop.time())


class Writer:
    """Inserts numbered chat messages and changes statuses in PostgreSQL at a steady pace."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.sent: list[str] = []
        self.statuses: dict[str, str] = {}

    async def run(self, stop: asyncio.Event) -> None:
        connection = await asyncpg.connect(self.dsn)
        try:
            n = 0
            while not stop.is_set():
                text = f"m{n:05d}"
                await connection.execute(
                    "INSERT INTO messages (server_id, user_id, message) VALUES ($1, $2, $3)",
                    GUILD,
                    MEMBERS[n % len(MEMBERS)],
                    text,
                )
                self.sent.append(text)
                if n % 3 == 0:
                    uid = MEMBERS[(n // 3) % len(MEMBERS)]
                    status = STATUSES[(n // 3 // len(MEMBERS)) % len(STATUSES)]
                    await connection.execute(
                        "UPDATE users SET status = $1 WHERE user_id = $2", status, uid
                    )
                    self.statuses[uid] = status
                n += 1
                await asyncio.sleep(PACE)
        finally:
            await connection.close()


def duplicated(seen: list[str]) -> int:
    return len(seen) - len(set(seen))


def reordered(seen: list[str]) -> int:
    return sum(1 for before, after in itertools.pairwise(seen) if after < before)


async def seen_everywhere(viewers: list[Viewer], text_count: int, writer: Writer) -> None:
    """Wait until every viewer has the writer's ``text_count``-th message or a later one."""
    await until(lambda: len(writer.sent) >= text_count, "the writer stopped")
    wanted = writer.sent[text_count - 1]

    def reached() -> bool:
        return all(v.chat and max(v.chat) >= wanted for v in viewers)

    await until(reached, f"not every viewer got {wanted} (live after the failover)")


async def test_every_process_is_live_after_each_master_is_sigkilled(
    cluster, start_serving, database
):
    await cluster.start()
    processes = [await start_serving() for _ in range(3)]
    described = json.dumps(await processes[0].api("/api/plugins"))
    assert SENTINEL_PASSWORD not in described and '"value": "***"' in described
    writer = Writer(database)
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        viewers = []
        for index, process in enumerate(processes):
            client = Client(process.url, timeout=WAIT, max_queue=None)
            viewers.append(Viewer(f"dback{index}", await stack.enter_async_context(client)))
        watchers = [asyncio.create_task(viewer.watch()) for viewer in viewers]
        await until(lambda: all(v.joined for v in viewers), "a viewer could not join")
        writing = asyncio.create_task(writer.run(stop))
        try:
            await seen_everywhere(viewers, 20, writer)
            for failover in (1, 2):
                old = await cluster.kill_master()
                new = await cluster.failed_over(old)
                log.info("failover %d: master %d -> %d", failover, old, new)
                # Live again: a message written after the failover reaches every viewer.
                await seen_everywhere(viewers, len(writer.sent) + 1, writer)
                if failover == 1:
                    await cluster.restart(old, new)  # the replica the second failover needs
                    await seen_everywhere(viewers, len(writer.sent) + 20, writer)
            stop.set()
            await writing
            await seen_everywhere(viewers, len(writer.sent), writer)

            def converged() -> bool:
                return all(
                    viewer.statuses.get(uid, "offline") == status
                    for viewer in viewers
                    for uid, status in writer.statuses.items()
                )

            await until(converged, "a viewer's world differs from PostgreSQL")
            await asyncio.sleep(2.0)  # whatever arrives late: duplicates
        finally:
            stop.set()
            for task in [*watchers, writing]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    for viewer in viewers:
        lost = len(set(writer.sent) - set(viewer.chat))
        log.info(
            "%s: %d chat messages written, %d seen, %d lost, %d duplicated, %d reordered",
            viewer.name,
            len(writer.sent),
            len(viewer.chat),
            lost,
            duplicated(viewer.chat),
            reordered(viewer.chat),
        )
    for viewer in viewers:
        assert duplicated(viewer.chat) == 0, f"{viewer.name} got chat twice"
        assert reordered(viewer.chat) == 0, f"{viewer.name} got chat out of order"
        assert set(viewer.chat) == set(writer.sent), f"{viewer.name} lost chat"


async def test_a_start_with_every_sentinel_down_says_so_and_recovers(
    cluster, start_serving, database
):
    # The cluster is not started: nobody listens on the sentinels' ports. The password is
    # written in the address list this time.
    hosts = cluster.addresses
    process = await start_serving(
        DBACK_REDIS_SENTINELS=f"redis://:{quote(SENTINEL_PASSWORD)}@{hosts}"
    )
    described = json.dumps(await process.api("/api/plugins"))
    assert SENTINEL_PASSWORD not in described and quote(SENTINEL_PASSWORD) not in described
    assert f"sentinels={hosts} master=mymaster" in described
    assert f"redis://:***@{hosts}" in described
    report = await process.api("/readyz")
    waiting = report["waiting"]["dback-redis"]
    assert waiting.startswith("unavailable: cannot reach Redis at redis://mymaster/0: ")
    assert "No master found for 'mymaster'" in waiting
    assert "No master found for 'mymaster'" in process.log_path.read_text()

    await cluster.start()

    async def ready() -> bool:
        return bool((await process.api("/readyz"))["ready"])

    await until(ready, "the process did not recover once the sentinels answered")
    writer = Writer(database)
    stop = asyncio.Event()
    async with Client(process.url, timeout=WAIT, max_queue=None) as client:
        viewer = Viewer("dback0", client)
        watching = asyncio.create_task(viewer.watch())
        try:
            await until(lambda: viewer.joined, "the viewer could not join")
            writing = asyncio.create_task(writer.run(stop))
            await seen_everywhere([viewer], 5, writer)
            stop.set()
            await writing
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
    assert viewer.statuses.keys() == set(MEMBERS)
    log_text = process.log_path.read_text()
    assert SENTINEL_PASSWORD not in log_text and quote(SENTINEL_PASSWORD) not in log_text


def test_the_failover_bench_runs_and_reports():
    """The bench still works: one failover, its table row (nothing timed is asserted)."""
    bench = Path(__file__).resolve().parents[1] / "bench" / "failover_bench.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--down-after", "1000", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("| 1000 |")]
    assert row.endswith("of 1 |")
