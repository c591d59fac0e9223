"""``dback serve --workers N``: N processes sharing one port and one world, supervised.

One dback process uses one core. Workers let a machine's other cores serve too: each is a
full ``dback serve`` listening on the same address with ``SO_REUSEPORT`` (the kernel spreads
new connections over them), and all share one world through a plugin that answers the
``worker_sharing`` hook (a bus that elects the one worker running the providers). The parent
only supervises: it starts the workers, starts a worker again when it dies, and on SIGTERM
or SIGINT stops them all (each closes its clients with 1001); a second signal kills them.

A worker that stops answering is replaced too: a stopped or stuck worker keeps its share of
the port's new connections, which then time out. Each worker beats over a pipe from its event
loop (``dback_core.ops.heartbeat``); one silent for ``DBACK_WORKER_TIMEOUT`` seconds (until
it listens, ``START_GRACE``: it imports and starts its plugins meanwhile) is killed with
SIGKILL - the only signal a stopped process cannot ignore or delay - and started again.

Restarts back off (1, 2, 4 ... 30 s) while workers fail, and a worker fails unless it served
``SERVED_ENOUGH`` seconds: counted from its ``SERVING`` beat, not from its start, so a worker
that takes long to fail at start (a plugin's startup timing out) still counts as failing.

A Ctrl-C in a terminal, or ``systemctl stop`` with systemd's default ``KillMode``, signals the
whole group: each worker gets the signal once from there and once more from the supervisor.
A worker (``DBACK_WORKER`` set) therefore never takes a repeated signal as "force": only the
supervisor counts signals, and it kills the workers on the second one it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dback_core.ops.heartbeat import HEARTBEAT_FD_ENV, HeartbeatPipe
from dback_core.plugin.backoff import Backoff

log = logging.getLogger(__name__)

#: Set in each worker's environment: its number, for its logs and for operators.
WORKER_ENV = "DBACK_WORKER"
#: A worker that served shorter than this failed: its restarts back off.
SERVED_ENOUGH = 10.0
#: Seconds a worker may go without a heartbeat before it listens (imports, plugins' startup).
START_GRACE = 60.0
RESTART_FIRST = 1.0
RESTART_MAX = 30.0
#: Seconds the workers get to close their clients before they are killed.
STOP_GRACE = 30.0


def worker_count(requested: int) -> int:
    """``requested`` workers; 0 means one per core."""
    if requested < 0:
        raise ValueError(f"--workers must be 0 (one per core) or more, not {requested}")
    return requested or os.cpu_count() or 1


def scaling_problem(port: int, plugin: str | None, sharing: bool | str) -> str | None:
    """Why several workers cannot run, or None when they can: ``plugin`` and ``sharing`` are
    what the ``worker_sharing`` hook answered (True, or what that plugin's settings lack)."""
    if isinstance(sharing, str):
        return f"--workers: plugin {plugin} shares the world between workers but needs {sharing}"
    if sharing is not True:
        return (
            "--workers: no active plugin shares the world between workers, so each would serve "
            "a world of its own ('dback plugins' lists them; one may need its settings)"
        )
    if port == 0:
        return "--workers needs a fixed --port: with port 0 every worker would get its own"
    return None


def _restart_backoff() -> Backoff:
    """Restart delays: reset by the supervisor once a worker served ``SERVED_ENOUGH``."""
    return Backoff(RESTART_FIRST, RESTART_MAX)


@dataclass
class Worker:
    """One supervised ``dback serve`` process and its restart delays."""

    number: int
    process: asyncio.subprocess.Process | None = None
    restart: Backoff = field(default_factory=_restart_backoff)


class Supervisor:
    """Starts ``count`` workers running ``command`` and keeps them running until stopped;
    replaces one that sends no heartbeat for ``timeout`` seconds."""

    def __init__(
        self,
        count: int,
        command: Sequence[str],
        environ: Mapping[str, str],
        *,
        timeout: float = 5.0,
        start_grace: float = START_GRACE,
        served_enough: float = SERVED_ENOUGH,
    ) -> None:
        self.workers = [Worker(number) for number in range(1, count + 1)]
        self.command = list(command)
        self.environ = dict(environ)
        self.timeout = timeout
        self.start_grace = start_grace
        self.served_enough = served_enough
        self._stopping = asyncio.Event()
        self._force = asyncio.Event()

    async def run(self) -> None:
        """Supervise until SIGTERM/SIGINT, then stop every worker."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop)
        log.info("starting %d workers", len(self.workers))
        watchers = [asyncio.create_task(self._keep(worker)) for worker in self.workers]
        await self._stopping.wait()
        log.info("stopping %d workers", len(self.workers))
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await self._stop_all()

    def stop(self) -> None:
        """Stop every worker gracefully (what SIGTERM or SIGINT does); a second call kills."""
        if self._stopping.is_set():
            log.warning("second signal: killing the workers")
            self._force.set()
        self._stopping.set()

    async def _keep(self, worker: Worker) -> None:
        """Run ``worker``; when it exits or hangs, start it again (with backoff unless it
        served ``served_enough`` seconds)."""
        while True:
            pipe = await self._start(worker)
            try:
                hung = await self._watch(worker, pipe)
            finally:
                pipe.close()
            assert worker.process is not None
            if pipe.served() >= self.served_enough:
                worker.restart.reset()
            delay = worker.restart.next()
            if hung:
                log.error(
                    "worker %d (pid %d) sent no heartbeat for %.1f s (stopped or stuck): "
                    "killed it with SIGKILL; starting it again in %.0f s",
                    worker.number,
                    worker.process.pid,
                    pipe.silent_for(),
                    delay,
                )
            else:
                log.warning(
                    "worker %d (pid %d) exited with %s after %.1f s (served %.1f s); "
                    "starting it again in %.0f s",
                    worker.number,
                    worker.process.pid,
                    worker.process.returncode,
                    time.monotonic() - pipe.started,
                    pipe.served(),
                    delay,
                )
            await asyncio.sleep(delay)

    async def _watch(self, worker: Worker, pipe: HeartbeatPipe) -> bool:
        """Wait until the worker exits (False) or goes silent, then kill it (True)."""
        assert worker.process is not None
        exited = asyncio.ensure_future(worker.process.wait())
        try:
            while not exited.done():
                remaining = pipe.deadline(self.timeout, self.start_grace) - time.monotonic()
                if remaining <= 0:
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.kill()
                    await exited
                    return True
                # Before the worker serves the deadline is far off, and its serving brings it
                # near: look again within ``timeout`` seconds.
                await asyncio.wait({exited}, timeout=min(remaining, self.timeout))
            return False
        finally:
            exited.cancel()

    async def _start(self, worker: Worker) -> HeartbeatPipe:
        pipe = HeartbeatPipe()
        env = {**self.environ, WORKER_ENV: str(worker.number), HEARTBEAT_FD_ENV: str(pipe.write_fd)}
        try:
            worker.process = await asyncio.create_subprocess_exec(
                *self.command, env=env, pass_fds=(pipe.write_fd,)
            )
        except BaseException:
            os.close(pipe.write_fd)
            pipe.close()
            raise
        pipe.watch()
        log.info("worker %d started (pid %d)", worker.number, worker.process.pid)
        return pipe

    @staticmethod
    async def _all_exited(processes: list[asyncio.subprocess.Process]) -> bool:
        await asyncio.gather(*(process.wait() for process in processes))
        return True

    async def _stop_all(self) -> None:
        running = [w.process for w in self.workers if w.process and w.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        waiting = asyncio.ensure_future(self._all_exited(running))
        force = asyncio.ensure_future(self._force.wait())
        done, _ = await asyncio.wait(
            {waiting, force}, timeout=STOP_GRACE, return_when=asyncio.FIRST_COMPLETED
        )
        if waiting not in done:
            log.warning("workers did not stop in time; killing them")
            for process in running:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await waiting
        force.cancel()
        log.info("all workers stopped")


def worker_command(arguments: Sequence[str]) -> list[str]:
    """The command line that starts one worker: this ``dback serve`` with its options."""
    return [sys.executable, "-m", "dback_core", "serve", *arguments]
