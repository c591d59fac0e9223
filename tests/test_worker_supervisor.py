"""The ``--workers`` supervisor with real child processes and real heartbeat pipes: a worker
that stops beating (stopped, or never started its loop) is killed and replaced, and restart
delays grow while workers fail - however long each took to fail - and reset only after one
served. The children are small Python programs speaking the heartbeat protocol, so each
case takes seconds; test_redis_workers.py runs the same against real ``dback serve``."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from collections.abc import Iterator

import pytest

from dback_core.ops.heartbeat import BEAT, HEARTBEAT_FD_ENV, SERVING
from dback_core.ops.workers import Supervisor

WAIT = 60.0

#: A worker that beats from its event loop like ``dback serve``: for ``serve`` seconds
#: (saying it serves when ``serving``), then exits 3, or stops itself with SIGSTOP.
WORKER = f"""
import asyncio, os, signal, sys
fd = int(os.environ[{HEARTBEAT_FD_ENV!r}])
serve, serving, then = float(sys.argv[1]), sys.argv[2] == "yes", sys.argv[3]

async def main():
    if serving:
        os.write(fd, {SERVING!r})
    loop = asyncio.get_running_loop()
    end = loop.time() + serve
    while loop.time() < end:
        os.write(fd, {BEAT!r})
        await asyncio.sleep(0.1)
    if then == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    sys.exit(3)

asyncio.run(main())
"""


def worker(serve: float, *, serving: bool, then: str = "exit") -> list[str]:
    return [sys.executable, "-c", WORKER, str(serve), "yes" if serving else "no", then]


@pytest.fixture
def supervisor_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="dback_core.ops.workers")
    yield caplog


async def supervise_until(
    supervisor: Supervisor, caplog: pytest.LogCaptureFixture, pattern: str, count: int
) -> list[re.Match[str]]:
    """Run ``supervisor`` until its log has ``count`` lines matching ``pattern``; stop it,
    check that no child outlived it, and return those matches."""
    running = asyncio.create_task(supervisor.run())
    pids: set[int] = set()
    try:
        deadline = asyncio.get_running_loop().time() + WAIT
        while True:
            found = [m for m in map(re.compile(pattern).search, caplog.messages) if m]
            pids |= {w.process.pid for w in supervisor.workers if w.process}
            if len(found) >= count:
                break
            assert not running.done(), running
            assert asyncio.get_running_loop().time() < deadline, "\n".join(caplog.messages)
            await asyncio.sleep(0.05)
    finally:
        supervisor.stop()
        await asyncio.wait_for(running, WAIT)
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), f"worker {pid} outlived its supervisor"
    return found[:count]


async def test_a_worker_that_fails_before_serving_backs_off_however_long_it_took(
    supervisor_log,
):
    # Each attempt lives 1.5 s - longer than "served enough" - but never says it serves.
    supervisor = Supervisor(1, worker(1.5, serving=False), os.environ, served_enough=1.0)
    exits = await supervise_until(
        supervisor, supervisor_log, r"exited with 3 .* starting it again in (\d+) s", 4
    )
    assert [int(m.group(1)) for m in exits] == [1, 2, 4, 8]


async def test_restart_delays_reset_once_a_worker_served(supervisor_log):
    supervisor = Supervisor(1, worker(1.5, serving=True), os.environ, served_enough=1.0)
    exits = await supervise_until(
        supervisor, supervisor_log, r"exited with 3 .* starting it again in (\d+) s", 3
    )
    assert [int(m.group(1)) for m in exits] == [1, 1, 1]


async def test_a_stopped_worker_is_killed_after_the_timeout_and_started_again(supervisor_log):
    supervisor = Supervisor(1, worker(0.5, serving=True, then="stop"), os.environ, timeout=1.0)
    await supervise_until(supervisor, supervisor_log, r"worker 1 started", 2)
    hung = [m for m in supervisor_log.messages if "sent no heartbeat" in m]
    assert len(hung) == 1, supervisor_log.messages
    line = re.fullmatch(
        r"worker 1 \(pid \d+\) sent no heartbeat for (\d+\.\d) s \(stopped or stuck\): "
        r"killed it with SIGKILL; starting it again in 1 s",
        hung[0],
    )
    assert line, hung[0]
    assert float(line.group(1)) >= 1.0, "killed before its timeout"
    assert not any("exited with" in m for m in supervisor_log.messages)


async def test_a_worker_that_never_beats_is_killed_after_the_start_grace(supervisor_log):
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    supervisor = Supervisor(1, sleeper, os.environ, timeout=1.0, start_grace=2.0)
    found = await supervise_until(
        supervisor, supervisor_log, r"sent no heartbeat for (\d+\.\d) s", 1
    )
    assert 2.0 <= float(found[0].group(1)) < 2.0 + WAIT


async def test_a_worker_stopped_before_it_serves_gets_the_start_grace(supervisor_log):
    """Not listening yet, it takes no connections: a plugin's startup may block its loop."""
    stops = worker(0.3, serving=False, then="stop")
    supervisor = Supervisor(1, stops, os.environ, timeout=1.0, start_grace=4.0)
    found = await supervise_until(
        supervisor, supervisor_log, r"sent no heartbeat for (\d+\.\d) s", 1
    )
    # Silent since its last beat, 0.3 s (plus its interpreter's start) after it started.
    assert float(found[0].group(1)) > 2.0, found[0].group(0)
