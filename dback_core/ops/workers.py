"""``dback serve --workers N``: N processes sharing one port and one world, supervised.

One dback process uses one core. Workers let a machine's other cores serve too: each is a
full ``dback serve`` listening on the same address with ``SO_REUSEPORT`` (the kernel spreads
new connections over them), and all share one world through a plugin that answers the
``worker_sharing`` hook (a bus that elects the one worker running the providers). The parent
only supervises: it starts the workers, starts a worker again when it dies, and on SIGTERM
or SIGINT stops them all (each closes its clients with 1001); a second signal kills them.

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

from dback_core.plugin.backoff import Backoff

log = logging.getLogger(__name__)

#: Set in each worker's environment: its number, for its logs and for operators.
WORKER_ENV = "DBACK_WORKER"
#: A worker that lived shorter than this died "at once": its restarts back off.
QUICK_DEATH = 10.0
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
    """Restart delays: short again once a worker lived ``QUICK_DEATH`` seconds."""
    return Backoff(RESTART_FIRST, RESTART_MAX, reset_after=QUICK_DEATH)


@dataclass
class Worker:
    """One supervised ``dback serve`` process and its restart delays."""

    number: int
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restart: Backoff = field(default_factory=_restart_backoff)


class Supervisor:
    """Starts ``count`` workers running ``command`` and keeps them running until stopped."""

    def __init__(self, count: int, command: Sequence[str], environ: Mapping[str, str]) -> None:
        self.workers = [Worker(number) for number in range(1, count + 1)]
        self.command = list(command)
        self.environ = dict(environ)
        self._stopping = asyncio.Event()
        self._force = asyncio.Event()

    async def run(self) -> None:
        """Supervise until SIGTERM/SIGINT, then stop every worker."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._signalled)
        log.info("starting %d workers", len(self.workers))
        watchers = [asyncio.create_task(self._keep(worker)) for worker in self.workers]
        await self._stopping.wait()
        log.info("stopping %d workers", len(self.workers))
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await self._stop_all()

    def _signalled(self) -> None:
        if self._stopping.is_set():
            log.warning("second signal: killing the workers")
            self._force.set()
        self._stopping.set()

    async def _keep(self, worker: Worker) -> None:
        """Run ``worker``; when it exits, start it again (with backoff if it died at once)."""
        while True:
            await self._start(worker)
            assert worker.process is not None
            code = await worker.process.wait()
            delay = worker.restart.next()
            log.warning(
                "worker %d (pid %d) exited with %s after %.1f s; starting it again in %.0f s",
                worker.number,
                worker.process.pid,
                code,
                time.monotonic() - worker.started_at,
                delay,
            )
            await asyncio.sleep(delay)

    async def _start(self, worker: Worker) -> None:
        env = {**self.environ, WORKER_ENV: str(worker.number)}
        worker.process = await asyncio.create_subprocess_exec(*self.command, env=env)
        worker.started_at = time.monotonic()
        worker.restart.attempt()
        log.info("worker %d started (pid %d)", worker.number, worker.process.pid)

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
