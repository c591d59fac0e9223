"""A worker's heartbeat to its supervisor over a pipe: proof that its event loop still runs.

A worker can be alive and useless: stopped (SIGSTOP), stuck in a blocking call or an endless
loop. Its listening socket stays open, so the kernel keeps handing it its share of the port's
new connections (``SO_REUSEPORT``), and they time out - while its process, never exiting,
looks fine to a supervisor that only waits for exits. So each worker writes a byte to a pipe
from a task on its own event loop: the beats stop exactly when the loop stops running, and the
supervisor replaces a worker that went silent.

The worker also writes one ``SERVING`` byte once it listens, so the supervisor can tell a
worker that served from one that failed at start however long that failure took.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

#: Set in each worker's environment: the descriptor of its end of the heartbeat pipe.
HEARTBEAT_FD_ENV = "DBACK_WORKER_HEARTBEAT_FD"
BEAT = b"."
SERVING = b"S"


def beat_interval(timeout: float) -> float:
    """Seconds between beats: several per ``timeout``, so one late beat is no alarm."""
    return min(1.0, timeout / 5)


class Heartbeat:
    """The worker's end: ``run`` beats while the event loop runs; ``serving`` says it listens.

    The pipe is non-blocking: a supervisor that reads late must never stall the worker, and
    a beat the full pipe refuses is not missed (the beats already in it prove the same).
    """

    def __init__(self, fd: int, interval: float) -> None:
        self.fd = fd
        self.interval = interval
        os.set_blocking(fd, False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], timeout: float) -> Heartbeat | None:
        """The heartbeat a supervisor asked for in ``environ`` (it replaces this worker after
        ``timeout`` seconds of silence), or None when unsupervised."""
        if not environ.get(HEARTBEAT_FD_ENV, "").strip():
            return None
        return cls(int(environ[HEARTBEAT_FD_ENV]), beat_interval(timeout))

    async def run(self) -> None:
        """Beat every ``interval`` seconds until cancelled."""
        while True:
            self._send(BEAT)
            await asyncio.sleep(self.interval)

    def serving(self) -> None:
        self._send(SERVING)

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError):
            try:
                os.write(self.fd, data)
            except BrokenPipeError:
                log.debug("the supervisor's end of the heartbeat pipe is closed")


class HeartbeatPipe:
    """The supervisor's end of one worker's pipe: when it last beat, since when it serves.

    Make one per start of a worker: pass ``write_fd`` to the worker (``pass_fds``), then
    call ``watch`` (which closes the parent's copy of ``write_fd``, so the read end sees the
    end of the pipe when the worker exits), and ``close`` once the worker has exited.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.started = time.monotonic()
        self.last_beat: float | None = None
        self.serving_since: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self) -> None:
        """Start reading beats on the running loop."""
        os.close(self.write_fd)
        os.set_blocking(self.read_fd, False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.read_fd, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.read_fd, 4096)
        except BlockingIOError:
            return
        if not data:
            self._stop_reading()
            return
        now = time.monotonic()
        self.last_beat = now
        if SERVING in data and self.serving_since is None:
            self.serving_since = now

    def deadline(self, timeout: float, start_grace: float) -> float:
        """When the worker counts as hung: ``timeout`` after its last beat; until it serves,
        not before ``start_grace`` after its start either (a worker that does not listen yet
        takes no connections, and its plugins' startup may block its loop for a while)."""
        silent_since = self.last_beat or self.started
        if self.serving_since is None:
            return max(self.started + start_grace, silent_since + timeout)
        return silent_since + timeout

    def silent_for(self) -> float:
        """Seconds since the last beat (since the start when there was none)."""
        return time.monotonic() - (self.last_beat or self.started)

    def served(self) -> float:
        """Seconds the worker served: from its ``SERVING`` byte to its last beat."""
        if self.serving_since is None or self.last_beat is None:
            return 0.0
        return self.last_beat - self.serving_since

    def _stop_reading(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.read_fd)
            self._loop = None

    def close(self) -> None:
        self._stop_reading()
        with contextlib.suppress(OSError):
            os.close(self.read_fd)
