"""Dark time of a Redis Sentinel failover: how long viewers see no events after the master
is SIGKILLed, for several ``down-after-milliseconds``.

For each value: a master, a replica and three sentinels of the bench's own (real
``redis-server`` processes on free ports), three ``dback serve`` processes in the ``auto``
role with the seeded mock as provider (``DBACK_MOCK_INTERVAL`` 0.05 s: an event every few
tens of milliseconds), and a WebSocket viewer on each. Once events flow everywhere the
master is SIGKILLed; a viewer's dark time is the longest gap between two events it
received from 1 s before the kill until 4 s after events flow again. The publisher's own
viewer is served locally and stays lit; the edges' viewers wait for the failover. A run
also notes whether the publisher lease changed hands (the failover outlasted the lease).

    .venv/bin/python plugins/dback_redis/bench/failover_bench.py --down-after 500,1000,2000,5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dback_core.testing import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dback_process import DbackProcess  # the tests' helpers
from sentinel_cluster import MASTER_NAME, SentinelCluster

WAIT = 60.0


async def watch(client: Client, arrivals: list[float]) -> None:
    """Note the time of every presence and chat frame the viewer receives."""
    await client.join("default")
    while True:
        frame = await client.recv(None)
        if frame["type"] in {"presence", "message"}:
            arrivals.append(time.monotonic())


def darkest(arrivals: list[float], start: float, end: float) -> float:
    """The longest gap between two arrivals (or ``start`` and the first) in [start, end]."""
    inside = [start, *(t for t in arrivals if start <= t <= end)]
    if len(inside) == 1:
        return end - start
    return max(b - a for a, b in itertools.pairwise(inside))


async def one_run(
    down_after_ms: int, lease: float, directory: Path
) -> tuple[list[float], float, bool]:
    """Edge viewers' dark times, the publisher viewer's, and whether the lease moved."""
    cluster = SentinelCluster(directory / "redis", down_after_ms=down_after_ms)
    processes: list[DbackProcess] = []
    try:
        await cluster.start()
        env = {
            "DBACK_PLUGINS": "dback-redis,dback-mock",
            "DBACK_REDIS_SENTINELS": cluster.addresses,
            "DBACK_REDIS_LEASE_SECONDS": str(lease),
            "DBACK_MOCK_SEED": "7",
            "DBACK_MOCK_INTERVAL": "0.05",
        }
        for index in range(3):
            log = directory / f"dback{index}.log"
            processes.append(
                DbackProcess("failoverbench", f"redis://{MASTER_NAME}/0", "auto", log, **env)
            )
            await processes[-1].ready(WAIT)
            if index == 0:
                await asyncio.sleep(1.0)  # the first one takes the lease
        urls = [process.url for process in processes]
        arrivals: list[list[float]] = [[] for _ in urls]
        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(Client(url, timeout=WAIT, max_queue=None))
                for url in urls
            ]
            tasks = [
                asyncio.create_task(watch(c, a)) for c, a in zip(clients, arrivals, strict=True)
            ]
            try:
                await asyncio.sleep(3.0)
                killed_at = time.monotonic()
                old = await cluster.kill_master()
                await cluster.failed_over(old)
                # Until every viewer has events again, then a little longer.
                while not all(a and a[-1] > killed_at + 0.5 for a in arrivals):
                    await asyncio.sleep(0.05)
                    if time.monotonic() - killed_at > WAIT:
                        raise TimeoutError("a viewer stayed dark")
                await asyncio.sleep(4.0)
            finally:
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        end = time.monotonic()
        dark = [darkest(a, killed_at - 1.0, end) for a in arrivals]
        logs = "".join(process.log_path.read_text() for process in processes)
        moved = "lease passed to another process" in logs or "could not renew" in logs
        return dark[1:], dark[0], moved
    finally:
        for process in processes:
            process.stop()
        cluster.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--down-after", default="500,1000,2000,5000", help="milliseconds, comma-separated"
    )
    parser.add_argument("--runs", type=int, default=3, help="failovers per value")
    parser.add_argument("--lease", type=float, default=6.0, help="DBACK_REDIS_LEASE_SECONDS")
    arguments = parser.parse_args()
    print(f"lease {arguments.lease:g} s, {arguments.runs} runs per value; dark time in seconds")
    print("| down-after (ms) | edges: median | edges: worst | publisher's viewer | lease moved |")
    print("|---|---|---|---|---|")
    for value in (int(v) for v in arguments.down_after.split(",")):
        edges: list[float] = []
        publisher: list[float] = []
        moved = 0
        for _ in range(arguments.runs):
            with tempfile.TemporaryDirectory(prefix="dback-failover-") as directory:
                dark, local, lease_moved = await one_run(value, arguments.lease, Path(directory))
            edges += dark
            publisher.append(local)
            moved += lease_moved
        print(
            f"| {value} | {statistics.median(edges):.2f} | {max(edges):.2f} | "
            f"{max(publisher):.2f} | {moved} of {arguments.runs} |",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
