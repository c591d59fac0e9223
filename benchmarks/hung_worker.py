"""What a hung worker costs new connections: ``python benchmarks/hung_worker.py``.

Starts a real ``dback serve --workers N`` (dback-redis and dback-mock sharing one world
through the Redis at ``BENCH_REDIS_URL``, under a prefix of this run's own), waits until every
worker serves, then stops worker 1 with SIGSTOP - as a hang would - and keeps opening new
connections at ``--rate`` per second for ``--window`` seconds. Each must finish the WebSocket
handshake and join the default guild within ``--connect-timeout`` seconds, or it counts as
failed. The stopped worker's listening socket stays open, so the kernel keeps handing it its
share of the new connections (``SO_REUSEPORT``) until the supervisor kills it.

It prints the share of new connections that failed, second by second after the SIGSTOP, and
when the stopped worker was killed (``DBACK_WORKER_TIMEOUT``, ``--timeout``). ``--pythonpath
DIR`` runs the dback found in ``DIR`` instead of the installed one (``git archive`` an older
commit there to measure before and after). Results: docs/performance.md, "A hung worker".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import websockets

from dback_core.testing import Client

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Run:
    """One run's attempts (seconds after the SIGSTOP, joined or not) and the kill time."""

    attempts: list[tuple[float, bool]] = field(default_factory=list)
    killed_after: float | None = None

    def failed_share(self, start: float = 0.0, end: float = float("inf")) -> tuple[int, int]:
        chosen = [ok for at, ok in self.attempts if start <= at < end]
        return chosen.count(False), len(chosen)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def joins(port: int, timeout: float) -> bool:
    """Whether a new viewer is in the default guild within ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            async with Client(f"ws://127.0.0.1:{port}", timeout=timeout) as client:
                return bool((await client.join())["type"] == "server-join")
    except (OSError, TimeoutError, websockets.WebSocketException):
        return False


async def wait_for(log: Path, pattern: str, timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.findall(pattern, log.read_text())
        if found:
            return found
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{pattern!r} not logged in {timeout:.0f} s:\n{log.read_text()}")


def gone(pid: int) -> bool:
    """Whether ``pid`` was killed: no longer there, or a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def measure(args: argparse.Namespace, workdir: Path) -> Run:
    port = free_port()
    prefix = f"dbackhung{secrets.token_hex(4)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBACK_")}
    env |= {
        "DBACK_PLUGINS": "dback-redis,dback-mock",
        "DBACK_REDIS_URL": REDIS_URL,
        "DBACK_REDIS_PREFIX": prefix,
        "DBACK_WORKER_TIMEOUT": str(args.timeout),
        "DBACK_LOG_LEVEL": "WARNING",
    }
    if args.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.pythonpath, env.get("PYTHONPATH")]))
    log = workdir / "workers.log"
    command = [sys.executable, "-m", "dback_core", "serve", "--workers", str(args.workers)]
    with log.open("wb") as out:
        parent = subprocess.Popen(
            [*command, "--port", str(port), "--log-level", "INFO"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,  # not the repository: ``-m`` would import the dback found there
        )
    stopped: int | None = None
    try:
        serving = rf"(?s){'.*'.join(['serving '] * args.workers)}"
        await wait_for(log, serving)
        while not all(await asyncio.gather(*(joins(port, 10.0) for _ in range(20)))):
            await asyncio.sleep(0.5)
        pids = dict(re.findall(r"worker (\d+) started \(pid (\d+)\)", log.read_text()))
        stopped = int(pids["1"])
        run = Run()
        os.kill(stopped, signal.SIGSTOP)
        began = time.monotonic()

        async def attempt() -> None:
            at = time.monotonic() - began
            run.attempts.append((at, await joins(port, args.connect_timeout)))

        async def watch_kill() -> None:
            while not gone(stopped):
                await asyncio.sleep(0.02)
            run.killed_after = time.monotonic() - began

        watcher = asyncio.create_task(watch_kill())
        tasks = []
        for n in range(int(args.window * args.rate)):
            await asyncio.sleep(max(0.0, began + n / args.rate - time.monotonic()))
            tasks.append(asyncio.create_task(attempt()))
        await asyncio.gather(*tasks)
        watcher.cancel()
        return run
    finally:
        if stopped is not None and not gone(stopped):
            os.kill(stopped, signal.SIGCONT)
        parent.terminate()
        try:
            parent.wait(60)
        except subprocess.TimeoutExpired:
            parent.kill()
            parent.wait()
        for pid in re.findall(r"worker \d+ started \(pid (\d+)\)", log.read_text()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        await forget(prefix)


async def forget(prefix: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


def report(run: Run, args: argparse.Namespace) -> None:
    killed = "never" if run.killed_after is None else f"after {run.killed_after:.1f} s"
    print(
        f"{args.workers} workers, worker 1 stopped (SIGSTOP) at 0 s, killed {killed}; "
        f"{args.rate:g} new connections/s, each given {args.connect_timeout:g} s to join"
    )
    print("| seconds after SIGSTOP | new connections | failed |")
    print("|---|---|---|")
    step = args.bucket
    start = 0.0
    while start < args.window:
        failed, total = run.failed_share(start, start + step)
        share = f"{100 * failed / total:.0f} %" if total else "-"
        print(f"| {start:g}-{start + step:g} | {total} | {failed} ({share}) |")
        start += step
    failed, total = run.failed_share()
    print(f"| whole window | {total} | {failed} ({100 * failed / max(total, 1):.0f} %) |")
    if run.killed_after is not None:
        failed, total = run.failed_share(run.killed_after)
        print(f"| after the kill | {total} | {failed} ({100 * failed / max(total, 1):.0f} %) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=5.0, help="DBACK_WORKER_TIMEOUT")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--rate", type=float, default=20.0, help="new connections per second")
    parser.add_argument("--connect-timeout", type=float, default=2.0)
    parser.add_argument("--bucket", type=float, default=2.0, help="seconds per table row")
    parser.add_argument("--pythonpath", help="run the dback found in this directory")
    parser.add_argument("--json", type=Path, help="also write the attempts here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dback-hung-") as workdir:
        run = asyncio.run(measure(args, Path(workdir)))
    report(run, args)
    if args.json:
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": str(args.json)}, **vars(run)})
        )


if __name__ == "__main__":
    main()
