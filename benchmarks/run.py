"""dback side by side with d-back 0.0.18: ``make bench`` (or ``python benchmarks/run.py``).

Installs d-back 0.0.18 from the package index into its own virtual environment (once, under
``benchmarks/.venvs``), then runs every scenario against both servers, one server at a time,
the server pinned to CPU 0 and this process - all the clients - to CPU 1. Each scenario runs
``--runs`` times on a fresh server; the table shows medians, ratios (dback / d-back) and the
spread between runs as the machine's noise. A run in which the client process used more than
90 % of its CPU measured the client, not the server: it is invalid, left out of the medians
and counted in the table.

Scenarios (see docs/performance.md for what each number means):
  broadcast   N idle viewers of a 100-member guild (plus samplers), 100 presence broadcasts
              at 50/s; deliveries/s, latency p50/p99 from the scheduled time, memory/viewer
  storm       N clients connecting at once; how many joined, and how long it took
  joins       clients joining a 10,000-member guild, 50 at a time; joins per second
  slow        1,000 viewers, 500 broadcasts, with and without a client that never reads
  workers     dback only: the broadcast scenario against 1 process, then against 2 worker
              processes sharing the port (SO_REUSEPORT) and one world through Redis; adds
              server CPU per delivery and Redis's own CPU (see ``Cluster``)

Servers: ``dback`` (its defaults: permessage-deflate with every client that offers it),
``dback-none`` (``DBACK_COMPRESSION=none``) and ``d-back``; every client offers deflate, as
browsers do. ``dback-uvloop`` (uvloop's event loop) and ``dback-orjson`` (orjson encoding the
frames) measure those optional packages (installed by ``make setup``, from the ``test``
extra) and run only when named in ``--servers``. Bytes on the wire
are counted by the drain clients, frame headers included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import venv
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clients import Drain, Sampler, open_drain, open_drains, slow_reader, sweep

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DBACK_PYTHON = Path(sys.executable)
D_BACK_VERSION = "0.0.18"
HOST = "127.0.0.1"
SMALL, LARGE = "bench", "big"
SERVER_CPU, CLIENT_CPU = 0, 1
SATURATED = 0.90
SAMPLERS = 20


@dataclass
class Plan:
    runs: int
    viewers: list[int]
    broadcasts: int = 100
    rate: float = 50.0
    storm: int = 10000
    storm_timeout: float = 60.0
    joins: int = 1000
    join_parallel: int = 50
    large: int = 10000
    slow_viewers: int = 1000
    slow_broadcasts: int = 500
    samplers: int = SAMPLERS
    worker_viewers: int = 10000
    worker_counts: tuple[int, ...] = (1, 2)
    placement: str = "shared"


PLANS = {
    "full": Plan(runs=3, viewers=[1000, 5000, 10000]),
    "quick": Plan(runs=1, viewers=[1000, 5000], storm=5000, joins=100, slow_broadcasts=300),
    "smoke": Plan(
        runs=1,
        viewers=[30],
        broadcasts=10,
        storm=50,
        storm_timeout=30,
        joins=5,
        large=300,
        slow_viewers=20,
        slow_broadcasts=20,
        samplers=3,
        worker_viewers=30,
    ),
}


# -- the servers --------------------------------------------------------------------------


def d_back_python(cache: Path) -> Path:
    """The interpreter of a virtual environment holding d-back 0.0.18, created on first use."""
    home = cache / f"d-back-{D_BACK_VERSION}"
    python = home / "bin" / "python"
    marker = home / ".installed"
    if not marker.exists():
        print(f"installing d-back {D_BACK_VERSION} into {home}", flush=True)
        venv.create(home, with_pip=True, clear=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"d-back=={D_BACK_VERSION}"],
            check=True,
        )
        marker.touch()
    return python


def _pin(cpu: int) -> Callable[[], None]:
    return lambda: os.sched_setaffinity(0, {cpu})


#: Settings that make a server variant out of the same interpreter.
SERVER_ENV = {
    "dback-none": {"DBACK_COMPRESSION": "none"},
    "dback-uvloop": {"BENCH_LOOP": "uvloop"},
    "dback-orjson": {"BENCH_JSON": "orjson"},
}
#: The variants run by dback's interpreter.
DBACK_SERVERS = ("dback", "dback-none", "dback-uvloop", "dback-orjson")
#: Redis for the workers scenario; each run uses a prefix of its own.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


class ServerProcess:
    """``bench_server.py`` under one interpreter, pinned to the server CPU."""

    def __init__(
        self,
        name: str,
        python: Path,
        port: int,
        large: int,
        log: Path,
        extra_env: dict[str, str] | None = None,
        cpu: int = SERVER_CPU,
    ) -> None:
        self.name, self.python, self.port, self.large, self.log = name, python, port, large, log
        self.extra_env, self.cpu = extra_env or {}, cpu
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = dict(os.environ)
        env.update(
            DBACK_PLUGINS="",
            DBACK_MAX_CONNECTIONS="100000",
            DBACK_MAX_CONNECTIONS_PER_ADDRESS="100000",
            PYTHONPATH=str(HERE),
        )
        env.update(SERVER_ENV.get(self.name, {}))
        env.update(self.extra_env)
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                str(self.python),
                str(HERE / "bench_server.py"),
                "--port",
                str(self.port),
                "--large",
                str(self.large),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                preexec_fn=_pin(self.cpu),
                env=env,
                cwd=HERE,
            )
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise RuntimeError(f"{self.name} did not start; see {self.log}")

    async def broadcast(self, count: int, rate: float) -> None:
        self.process.stdin.write(f"broadcast {count} {rate}\n".encode())
        await self.process.stdin.drain()

    async def broadcast_done(self) -> None:
        line = await self.process.stdout.readline()
        if not line.startswith(b"done"):
            raise RuntimeError(f"{self.name} broadcast failed; see {self.log}")

    def rss(self) -> int:
        """Resident memory in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.process.stdin.write(b"quit\n")
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@contextlib.asynccontextmanager
async def running(name: str, python: Path, port: int, large: int, log: Path) -> AsyncIterator:
    server = ServerProcess(name, python, port, large, log)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


def redis_server_pid(url: str = REDIS_URL) -> int | None:
    """The local redis-server serving ``url``'s port, found in /proc (None if not local)."""
    port = url.rsplit(":", 1)[-1].split("/", 1)[0]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() != "redis-server":
                continue
            if f":{port}" in (entry / "cmdline").read_text():
                return int(entry.name)
    return None


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cluster:
    """dback as ``count`` worker processes on one port, measured as one server.

    What ``dback serve --workers N`` runs, minus the supervisor (which only restarts):
    ``count`` ``bench_server.py`` processes with ``DBACK_REUSE_PORT=1`` and the dback-redis
    plugin in its ``auto`` role under a prefix of this run's own. The d-back API callbacks
    are a provider: the elected publisher runs them, the others hold them on standby and
    serve the snapshot from Redis. Placement ``shared`` (the default) pins every worker to
    the server CPU, as the single process is, so 1 and N workers get the same core and the
    difference is what the workers cost; ``spread`` pins worker i to CPU i (modulo the CPUs),
    so on two cores the second worker shares CPU 1 with the clients. Broadcasts are sent to
    the first worker only; they reach the others through the Redis bus. One worker is plain
    dback, without Redis.
    """

    def __init__(
        self, count: int, port: int, large: int, log: Path, placement: str = "shared"
    ) -> None:
        self.count, self.port = count, port
        self.prefix = f"dbackbench{os.getpid()}x{time.monotonic_ns()}"
        shared = {"DBACK_REUSE_PORT": "1"} if count > 1 else {}
        if count > 1:
            shared.update(
                DBACK_PLUGINS="dback-redis",
                DBACK_DISABLE_PLUGINS="",  # whatever the caller's environment disables
                DBACK_REDIS_URL=REDIS_URL,
                DBACK_REDIS_PREFIX=self.prefix,
            )
        cpus = os.cpu_count() or 1
        self.workers = [
            ServerProcess(
                "dback",
                DBACK_PYTHON,
                port,
                large,
                log,
                shared,
                cpu=SERVER_CPU if placement == "shared" else index % cpus,
            )
            for index in range(count)
        ]
        self.redis_pid = redis_server_pid() if count > 1 else None

    async def start(self) -> None:
        for worker in self.workers:
            await worker.start()
        if self.count > 1:
            await self.wait_elected()

    async def wait_elected(self, timeout: float = 60.0) -> None:
        """Until, over several connections on the shared port, every answer is ready and
        both roles answered: one publisher was elected and the edges serve its snapshot."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            roles, ready = set(), True
            for _ in range(8 * self.count):
                status, _ = await http_get(self.port, "/readyz")
                ready = ready and status == 200
                _, body = await http_get(self.port, "/api/plugins")
                for plugin in json.loads(body)["plugins"]:
                    detail = plugin.get("detail") or ""  # none yet while it starts
                    if plugin["name"] == "dback-redis" and "role=auto (" in detail:
                        roles.add(detail.split("role=auto (", 1)[1].split(")", 1)[0])
            if ready and roles == {"publisher", "edge"}:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.count} workers not ready and elected in {timeout:.0f} s")

    async def broadcast(self, count: int, rate: float) -> None:
        await self.workers[0].broadcast(count, rate)

    async def broadcast_done(self) -> None:
        await self.workers[0].broadcast_done()

    def rss(self) -> int:
        return sum(worker.rss() for worker in self.workers)

    def cpu_seconds(self) -> float:
        return sum(worker.cpu_seconds() for worker in self.workers)

    def sockets(self) -> list[int]:
        """Open sockets of each worker: the difference over a connect shows where the
        kernel put the new connections."""
        return [
            sum(
                os.readlink(fd).startswith("socket:")
                for fd in Path(f"/proc/{worker.process.pid}/fd").iterdir()
            )
            for worker in self.workers
        ]

    def redis_cpu_seconds(self) -> float:
        return process_cpu_seconds(self.redis_pid) if self.redis_pid else 0.0

    async def stop(self) -> None:
        await asyncio.gather(*(worker.stop() for worker in self.workers))
        if self.count > 1:
            await self.forget()

    async def forget(self) -> None:
        """Delete this run's keys (snapshot, lease, chat history) from Redis."""
        from redis.asyncio import Redis

        redis = Redis.from_url(REDIS_URL)
        try:
            keys = [key async for key in redis.scan_iter(match=f"{self.prefix}:*")]
            if keys:
                await redis.delete(*keys)
        finally:
            await redis.aclose()


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """One plain HTTP request on a new connection: status and body."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@contextlib.asynccontextmanager
async def cluster(
    count: int, port: int, large: int, log: Path, placement: str
) -> AsyncIterator[Cluster]:
    workers = Cluster(count, port, large, log, placement)
    try:
        await workers.start()
        yield workers
    finally:
        await workers.stop()


# -- measuring ----------------------------------------------------------------------------


class ClientCpu:
    """This process's CPU share over a window: above ``SATURATED`` the client was the limit."""

    def __enter__(self) -> ClientCpu:
        self.cpu, self.wall = time.process_time(), time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.share = (time.process_time() - self.cpu) / max(time.monotonic() - self.wall, 1e-9)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def close_all(drains: list[Drain]) -> None:
    for drain in drains:
        drain.close()


async def keep_sweeping(drains: list[Drain]) -> None:
    """Read the drains all along, so frames never pile up into one long sweep that would
    delay the samplers (and the last delivery times are right)."""
    while True:
        await sweep(drains)
        await asyncio.sleep(0.02)


async def settle(drains: list[Drain], samplers: list[Sampler], expected: int, quiet: float) -> None:
    """Wait until every client has ``expected`` broadcasts, or nothing arrived for ``quiet`` s."""
    last_total, last_change = -1, time.monotonic()
    while True:
        await sweep(drains)
        total = sum(d.frames for d in drains) + sum(len(s.latencies) for s in samplers)
        want = len(drains) * (expected + 2) + len(samplers) * expected
        if total >= want:
            return
        if total != last_total:
            last_total, last_change = total, time.monotonic()
        elif time.monotonic() - last_change > quiet:
            return
        await asyncio.sleep(0.05)


async def broadcast_run(
    server: ServerProcess | Cluster, viewers: int, count: int, plan: Plan, slow: bool
) -> dict:
    samplers = [Sampler(HOST, server.port, SMALL) for _ in range(plan.samplers)]
    for sampler in samplers:
        await sampler.open()
    await asyncio.sleep(0.5)
    before = server.rss()
    sockets = server.sockets() if isinstance(server, Cluster) else []
    drains = await open_drains(HOST, server.port, SMALL, viewers, parallel=100)
    if isinstance(server, Cluster):
        sockets = [after - was for after, was in zip(server.sockets(), sockets, strict=True)]
    await asyncio.sleep(1.0)
    per_viewer = (server.rss() - before) / viewers
    blocked = await asyncio.to_thread(slow_reader, HOST, server.port, SMALL) if slow else None
    for drain in drains:
        drain.frames, drain.last_at, drain.received = 2, 0.0, 0
    server_cpu = server.cpu_seconds()
    redis_cpu = server.redis_cpu_seconds() if isinstance(server, Cluster) else 0.0
    sweeper = asyncio.create_task(keep_sweeping(drains))
    with ClientCpu() as cpu:
        start = time.monotonic() + 0.05
        await server.broadcast(count, plan.rate)
        # d-back can stall on a client that stops reading until its keepalive drops it (40 s)
        await asyncio.wait_for(server.broadcast_done(), count / plan.rate * 5 + 120)
        await settle(drains, samplers, count, quiet=5.0)
    sweeper.cancel()
    server_cpu = server.cpu_seconds() - server_cpu
    if isinstance(server, Cluster):
        redis_cpu = server.redis_cpu_seconds() - redis_cpu
    drained = sum(d.frames - 2 for d in drains)
    wire_bytes = sum(d.received for d in drains)
    delivered = sum(min(d.frames - 2, count) for d in drains)
    delivered += sum(min(len(s.latencies), count) for s in samplers)
    finished = max([d.last_at for d in drains] + [start])
    latencies = [value for s in samplers for value in s.latencies]
    for sampler in samplers:
        with contextlib.suppress(Exception):
            await sampler.close()
    close_all(drains)
    if blocked is not None:
        blocked.close()
    expected = count * (viewers + len(samplers))
    extra = {
        "redis_cpu_us_per_delivery": redis_cpu / max(delivered, 1) * 1e6,
        # the busiest worker's share of the viewers (1 / workers when evenly spread)
        "busiest_worker_share": max(sockets, default=0) / max(sum(sockets), 1),
    }
    return {
        "delivered": delivered / expected,
        "deliveries_per_s": delivered / max(finished - start, 1e-9),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "memory_per_viewer_kib": per_viewer / 1024,
        "server_cpu_s": server_cpu,
        "cpu_us_per_delivery": server_cpu / max(delivered, 1) * 1e6,
        "bytes_per_delivery": wire_bytes / max(drained, 1),
        "client_cpu": cpu.share,
        **(extra if isinstance(server, Cluster) and server.count > 1 else {}),
    }


async def storm_run(server: ServerProcess, plan: Plan) -> dict:
    await asyncio.sleep(0.5)
    before = server.rss()

    async def one() -> tuple[Drain | None, float]:
        try:
            drain = await asyncio.wait_for(open_drain(HOST, server.port, SMALL), plan.storm_timeout)
        except (OSError, TimeoutError, ConnectionError):
            return None, 0.0
        return drain, time.monotonic()

    with ClientCpu() as cpu:
        start = time.monotonic()
        results = await asyncio.gather(*(one() for _ in range(plan.storm)))
    drains = [drain for drain, _ in results if drain is not None]
    joined_at = [at for drain, at in results if drain is not None]
    await asyncio.sleep(1.0)
    per_viewer = (server.rss() - before) / max(len(drains), 1)
    close_all(drains)
    return {
        "joined": len(drains) / plan.storm,
        "all_joined": float(len(drains) == plan.storm),
        "all_joined_s": (max(joined_at) - start) if len(drains) == plan.storm else float("nan"),
        "p50_join_s": percentile([at - start for at in joined_at], 0.5),
        "memory_per_viewer_kib": per_viewer / 1024,
        "client_cpu": cpu.share,
    }


async def joins_run(server: ServerProcess, plan: Plan) -> dict:
    warm = await open_drain(HOST, server.port, LARGE)  # the guild's first load is not a join
    close_all([warm])
    gate = asyncio.Semaphore(plan.join_parallel)
    sizes: list[int] = []

    async def one() -> None:
        async with gate:
            drain = await open_drain(HOST, server.port, LARGE)
            sizes.append(drain.joined_bytes)
            drain.close()

    with ClientCpu() as cpu:
        start = time.monotonic()
        await asyncio.gather(*(one() for _ in range(plan.joins)))
        elapsed = time.monotonic() - start
    return {
        "joins_per_s": plan.joins / elapsed,
        "bytes_per_join": statistics.mean(sizes),
        "client_cpu": cpu.share,
    }


# -- the run ------------------------------------------------------------------------------


@dataclass
class Results:
    """Every run's numbers: results[server][scenario] -> list of dicts, one per run."""

    runs: dict[str, dict[str, list[dict]]] = field(default_factory=dict)

    def add(self, server: str, scenario: str, numbers: dict) -> None:
        self.runs.setdefault(server, {}).setdefault(scenario, []).append(numbers)

    def _values(self, server: str, scenario: str, key: str) -> list[float]:
        """The metric over the valid runs: NaN and runs with a saturated client left out."""
        runs = self.runs.get(server, {}).get(scenario, [])
        values = [run[key] for run in runs if run["client_cpu"] <= SATURATED]
        return [value for value in values if value == value]

    def median(self, server: str, scenario: str, key: str) -> float:
        values = self._values(server, scenario, key)
        return statistics.median(values) if values else float("nan")

    def spread(self, server: str, scenario: str, key: str) -> float:
        """(max - min) / median over the runs: the noise of this measurement."""
        values = self._values(server, scenario, key)
        if len(values) < 2 or not statistics.median(values):
            return 0.0
        return (max(values) - min(values)) / abs(statistics.median(values))

    def mark(self, server: str, scenario: str) -> str:
        """How many runs measured a saturated client instead of the server, if any."""
        runs = self.runs.get(server, {}).get(scenario, [])
        saturated = sum(run["client_cpu"] > SATURATED for run in runs)
        if not saturated:
            return ""
        if saturated == len(runs):
            return " (INVALID: client saturated)"
        return f" ({saturated} of {len(runs)} runs invalid: client saturated)"


#: Where each server's port is looked for: below the ephemeral port range of the clients.
PORTS = {
    "dback": 30100,
    "dback-none": 30150,
    "d-back": 30200,
    "dback-uvloop": 30250,
    "dback-orjson": 30300,
    "workers": 30350,
}
#: Column headings of the servers in the table, in this order.
HEADINGS = {
    "dback": "dback",
    "dback-none": "dback, compression none",
    "dback-uvloop": "dback on uvloop",
    "dback-orjson": "dback with orjson",
    "d-back": "d-back 0.0.18",
}


def free_port(first: int) -> int:
    """The first port from ``first`` on that nobody listens on: other benchmarks may be
    running on the same machine, and their clients must never reach our server."""
    for port in range(first, first + 50):
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{first + 49}")


def report(label: str, run: int, name: str, numbers: dict) -> None:
    shown = ", ".join(f"{key}={value:.3g}" for key, value in numbers.items())
    print(f"  {label:16} run {run + 1} {name:6}: {shown}", flush=True)


async def run_all(
    interpreters: dict[str, Path], plan: Plan, results: Results, log: Path, only: set[str]
) -> None:
    """Every scenario, run by run, alternating the servers so all see the same noise."""
    scenarios: list[tuple[str, Callable[[ServerProcess], Awaitable[dict]]]] = [
        (
            f"broadcast@{viewers}",
            lambda s, v=viewers: broadcast_run(s, v, plan.broadcasts, plan, slow=False),
        )
        for viewers in plan.viewers
    ]
    scenarios += [
        ("storm", lambda s: storm_run(s, plan)),
        ("joins", lambda s: joins_run(s, plan)),
        (
            "slow@without",
            lambda s: broadcast_run(s, plan.slow_viewers, plan.slow_broadcasts, plan, slow=False),
        ),
        (
            "slow@with",
            lambda s: broadcast_run(s, plan.slow_viewers, plan.slow_broadcasts, plan, slow=True),
        ),
    ]
    for label, body in scenarios:
        if only and label.split("@")[0] not in only:
            continue
        for run in range(plan.runs):
            for name, python in interpreters.items():
                load = os.getloadavg()[0]
                async with running(name, python, free_port(PORTS[name]), plan.large, log) as server:
                    numbers = await body(server)
                numbers["load"] = load
                results.add(name, label, numbers)
                report(label, run, name, numbers)
    if "workers" in only or (not only and "dback" in interpreters):
        await workers_runs(plan, results, log)


async def workers_runs(plan: Plan, results: Results, log: Path) -> None:
    """dback as 1 process and as N workers, alternated run by run (recorded under dback)."""
    for run in range(plan.runs):
        for count in plan.worker_counts:
            label = f"workers@{count}"
            load = os.getloadavg()[0]
            port = free_port(PORTS["workers"])
            async with cluster(count, port, plan.large, log, plan.placement) as server:
                numbers = await broadcast_run(
                    server, plan.worker_viewers, plan.broadcasts, plan, slow=False
                )
            numbers["load"] = load
            results.add("dback", label, numbers)
            report(label, run, "dback", numbers)


def table(results: Results, plan: Plan, servers: list[str]) -> list[str]:
    """Markdown rows: the metric, each server's median, the ratio and the runs' spread."""
    columns = [name for name in HEADINGS if name in servers]
    rows = [
        "| scenario | metric | "
        + " | ".join(HEADINGS[name] for name in columns)
        + " | ratio dback / d-back | noise (spread) |",
        "|---|---|" + "---|" * len(columns) + "---|---|",
    ]
    other = "d-back" if "d-back" in servers else None

    def row(scenario: str, key: str, label: str, fmt: str) -> None:
        if scenario not in results.runs.get("dback", {}):
            return
        mine = results.median("dback", scenario, key)
        theirs = results.median(other, scenario, key) if other else float("nan")
        ratio = mine / theirs if theirs == theirs and theirs else float("nan")
        shown_ratio = f"{ratio:.3g}x" if math.isfinite(ratio) else "-"
        cells = [
            f"{results.median(name, scenario, key):{fmt}}{results.mark(name, scenario)}"
            for name in columns
        ]
        noise = max(results.spread(name, scenario, key) for name in columns)
        rows.append(
            f"| {scenario} | {label} | " + " | ".join(cells) + f" | {shown_ratio} | {noise:.0%} |"
        )

    for viewers in plan.viewers:
        scenario = f"broadcast@{viewers}"
        row(scenario, "delivered", "delivered", ".1%")
        row(scenario, "deliveries_per_s", "deliveries/s", ",.0f")
        row(scenario, "p50_ms", "latency p50 (ms)", ",.1f")
        row(scenario, "p99_ms", "latency p99 (ms)", ",.1f")
        row(scenario, "memory_per_viewer_kib", "memory per idle viewer (KiB)", ".1f")
        row(scenario, "server_cpu_s", "server CPU for the broadcasts (s)", ".2f")
        row(scenario, "cpu_us_per_delivery", "server CPU per delivery (us)", ".2f")
        row(scenario, "bytes_per_delivery", "bytes on the wire per delivery", ",.1f")
        row(scenario, "client_cpu", "client CPU share", ".0%")
    row("storm", "joined", f"joined of {plan.storm:,}", ".1%")
    row("storm", "all_joined", "all joined in time (median of runs, 1 = yes)", ".0f")
    row("storm", "all_joined_s", "all joined after (s), runs where all did", ".1f")
    row("storm", "p50_join_s", "median join after (s)", ".2f")
    row("storm", "memory_per_viewer_kib", "memory per idle viewer (KiB)", ".1f")
    row("joins", "joins_per_s", f"joins/s into a {plan.large:,}-member guild", ",.1f")
    row("joins", "bytes_per_join", "bytes on the wire per join", ",.0f")
    for label in ("without", "with"):
        row(f"slow@{label}", "p99_ms", f"others' p99 (ms), slow reader {label}", ",.1f")
        row(f"slow@{label}", "delivered", f"delivered, slow reader {label}", ".1%")
    if len(rows) == 2:  # only the workers scenario ran
        return workers_table(results, plan)[1:]
    return rows + workers_table(results, plan)


def workers_table(results: Results, plan: Plan) -> list[str]:
    """The workers scenario's own table: one column per worker count (dback only)."""
    counts = [c for c in plan.worker_counts if f"workers@{c}" in results.runs.get("dback", {})]
    if not counts:
        return []
    rows = [
        "",
        f"| workers ({plan.worker_viewers:,} viewers, {plan.broadcasts} broadcasts at "
        f"{plan.rate:g}/s, placement {plan.placement}) | "
        + " | ".join(f"{c} worker{'s' if c > 1 else ''}" for c in counts)
        + " | noise (spread) |",
        "|---|" + "---|" * len(counts) + "---|",
    ]
    metrics = [
        ("delivered", "delivered", ".1%"),
        ("deliveries_per_s", "deliveries/s", ",.0f"),
        ("p50_ms", "latency p50 (ms)", ",.1f"),
        ("p99_ms", "latency p99 (ms)", ",.1f"),
        ("memory_per_viewer_kib", "memory per idle viewer (KiB)", ".1f"),
        ("server_cpu_s", "CPU of all workers for the broadcasts (s)", ".2f"),
        ("cpu_us_per_delivery", "workers' CPU per delivery (us)", ".2f"),
        ("redis_cpu_us_per_delivery", "redis-server's CPU per delivery (us)", ".3f"),
        ("client_cpu", "client CPU share", ".0%"),
    ]
    for key, label, fmt in metrics:
        cells, noise = [], 0.0
        for count in counts:
            scenario = f"workers@{count}"
            if key not in results.runs["dback"][scenario][0]:
                cells.append("-")
                continue
            value = results.median("dback", scenario, key)
            cells.append(f"{value:{fmt}}{results.mark('dback', scenario)}")
            noise = max(noise, results.spread("dback", scenario, key))
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {noise:.0%} |")
    return rows


def noise_note() -> str:
    load = os.getloadavg()
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average before the run "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
    )


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer viewers, one run")
    parser.add_argument("--smoke", action="store_true", help="tiny: checks the benchmark works")
    parser.add_argument("--runs", type=int, help="runs per scenario (medians are reported)")
    parser.add_argument("--servers", default="dback,dback-none,d-back", help="comma-separated")
    parser.add_argument("--only", default="", help="scenarios, e.g. broadcast,joins")
    parser.add_argument("--rate", type=float, help="broadcasts per second (default 50)")
    parser.add_argument(
        "--placement",
        choices=("shared", "spread"),
        default="shared",
        help="workers scenario: all workers on the server CPU, or worker i on CPU i",
    )
    parser.add_argument(
        "--viewers", help="viewer counts of the broadcast and workers scenarios, e.g. 10000"
    )
    parser.add_argument("--cache", type=Path, default=HERE / ".venvs")
    parser.add_argument("--json", type=Path, help="write every run's numbers here")
    args = parser.parse_args(argv)

    plan = PLANS["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.runs:
        plan.runs = args.runs
    plan.placement = args.placement
    if args.rate:
        plan.rate = args.rate
    if args.viewers:
        plan.viewers = [int(count) for count in args.viewers.split(",")]
        plan.worker_viewers = plan.viewers[-1]
    servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {CLIENT_CPU})
    note = noise_note()
    interpreters = {name: DBACK_PYTHON for name in DBACK_SERVERS if name in servers}
    if "d-back" in servers:
        interpreters["d-back"] = d_back_python(args.cache)
    log = args.cache / "servers.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    results = Results()
    started = time.monotonic()
    await run_all(interpreters, plan, results, log, only)
    rows = table(results, plan, servers)
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python", "benchmarks/run.py", *given])
    print()
    print("\n".join(rows))
    print(
        f"\ncommand: {command}\nmachine: {note}\nruns per scenario: {plan.runs}, "
        f"took {time.monotonic() - started:.0f} s"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"command": command, "machine": note, "runs": results.runs, "table": rows},
                indent=1,
            )
        )


if __name__ == "__main__":
    asyncio.run(main())
