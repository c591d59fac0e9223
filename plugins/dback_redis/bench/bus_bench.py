"""Cross-process delivery latency and bus throughput, publisher A -> edge B -> viewer.

A (a publisher with a 1,000-member in-process provider) runs in this process; B is a real
``dback serve`` edge process; a WebSocket viewer of B runs here too, so one clock times
both ends. Latency: one presence change at a time, from ``publish`` on A to the frame at
the viewer. Throughput: a burst of changes published back to back, until the viewer has
all of them. Needs the Redis at ``--url``; uses its own key prefix and deletes it after.

    .venv/bin/python plugins/dback_redis/bench/bus_bench.py --events 2000 --burst 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import websockets
from redis.asyncio import Redis

from dback_core import hookimpl
from dback_core.plugin.events import Presence
from dback_core.testing import running_server
from dback_redis.config import RedisConfig
from dback_redis.plugin import RedisPlugin

MEMBERS = 1000


class Provider:
    @hookimpl
    def get_server_data(self):
        return {"1": {"id": "bench", "name": "Bench"}}

    @hookimpl
    def get_user_data(self, server_id):
        return {
            str(uid): {"uid": str(uid), "username": f"m{uid}", "status": "online"}
            for uid in range(MEMBERS)
        }


def change(index: int) -> Presence:
    """The index-th change: every member flips between idle and online, so each one counts."""
    status = "idle" if (index // MEMBERS) % 2 == 0 else "online"
    return Presence("1", str(index % MEMBERS), status)


def start_edge(url: str, prefix: str, log: Path) -> tuple[subprocess.Popen, str]:
    env = {
        **os.environ,
        "DBACK_REDIS_URL": url,
        "DBACK_REDIS_ROLE": "edge",
        "DBACK_REDIS_PREFIX": prefix,
        "DBACK_LOG_LEVEL": "WARNING",
    }
    env.pop("DBACK_PLUGINS", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "dback_core", "serve", "--port", "0", "--log-level", "INFO"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"on (ws://[\d.]+:\d+)", log.read_text())
        if found:
            return process, found.group(1)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("edge did not start:\n" + log.read_text())


async def presence_frames(connection, count: int) -> None:
    received = 0
    while received < count:
        if json.loads(await connection.recv())["type"] == "presence":
            received += 1


async def bench(url: str, events: int, burst: int) -> dict[str, float]:
    prefix = f"dbackbench{uuid.uuid4().hex[:8]}"
    publisher = RedisPlugin(RedisConfig(url=url, role="publisher", prefix=prefix))
    admin = Redis.from_url(url)
    log = Path(tempfile.mkdtemp()) / "edge.log"
    process = None
    try:
        async with running_server(
            [("provider", Provider()), ("dback-redis", publisher)], environ={"DBACK_PLUGINS": ""}
        ) as a:
            while not await admin.exists(f"{prefix}:servers"):
                await asyncio.sleep(0.05)
            process, edge_url = start_edge(url, prefix, log)
            async with websockets.connect(edge_url, max_size=None) as viewer:
                await viewer.recv()  # server-list
                await viewer.send(json.dumps({"type": "connect", "data": {"server": "bench"}}))
                await viewer.recv()  # server-join
                latencies = []
                for index in range(events):
                    started = time.perf_counter()
                    await a.publish(change(index), origin="provider")
                    await presence_frames(viewer, 1)
                    latencies.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                receiving = asyncio.create_task(presence_frames(viewer, burst))
                for index in range(events, events + burst):
                    await a.publish(change(index), origin="provider")
                    if index % 100 == 0:
                        await asyncio.sleep(0)  # let the writer and the viewer run
                await receiving
                elapsed = time.perf_counter() - started
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
        keys = [key async for key in admin.scan_iter(match=f"{prefix}:*")]
        if keys:
            await admin.delete(*keys)
        await admin.aclose()
    latencies.sort()
    return {
        "latency_p50_ms": round(statistics.median(latencies), 3),
        "latency_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 3),
        "latency_max_ms": round(latencies[-1], 3),
        "throughput_events_per_s": round(burst / elapsed),
        "events": events,
        "burst": burst,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--events", type=int, default=2000, help="changes timed one by one")
    parser.add_argument("--burst", type=int, default=20000, help="changes sent back to back")
    args = parser.parse_args()
    result = asyncio.run(bench(args.url, args.events, args.burst))
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
