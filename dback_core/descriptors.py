"""File descriptors: as many as the system allows, and no log storm when they run out.

Every client holds one descriptor, and the usual soft limit (1024) is far below
``DBACK_MAX_CONNECTIONS``; the hard limit is what the administrator granted, so ``dback
serve`` raises the soft limit to it. When descriptors still run out, asyncio's accept loop
reports ``EMFILE`` with a traceback - in Python 3.11 once per pending connection in the
backlog, thousands of times a second, which starved the viewers. ``AcceptErrors`` turns
those reports into one rate-limited line; asyncio itself already pauses accepting for a
second and tries again.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
from typing import Any

from dback_core.limits import LogThrottle

log = logging.getLogger(__name__)

#: The errors asyncio's accept loop treats as "out of resources, retry later".
OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def raise_open_file_limit(max_connections: int) -> int:
    """Raise the open-file soft limit to the hard limit, log both; returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as error:
            log.warning("open files: cannot raise the soft limit %d to %d: %s", soft, hard, error)
        else:
            log.info("open files: soft limit raised from %d to the hard limit %d", soft, hard)
            soft = hard
    else:
        log.info("open files: soft limit %d, hard limit %s", soft, _limit_text(hard))
    if soft != resource.RLIM_INFINITY and soft < max_connections:
        log.warning(
            "open files: the limit %d is below DBACK_MAX_CONNECTIONS=%d; connections past it "
            "wait in the listen backlog",
            soft,
            max_connections,
        )
    return soft


def _limit_text(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


class AcceptErrors:
    """The event loop's exception handler while a server runs: ``accept`` running out of
    descriptors becomes one WARNING per interval; every other report goes where it went."""

    def __init__(self, interval: float = 10.0) -> None:
        self.throttle = LogThrottle(log, interval)
        self.reports = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: Any = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self)

    def uninstall(self) -> None:
        if self._loop is not None and self._loop.get_exception_handler() is self:
            self._loop.set_exception_handler(self._previous)
        self._loop = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if (
            isinstance(error, OSError)
            and error.errno in OUT_OF_RESOURCES
            and str(context.get("message", "")).startswith("socket.accept()")
        ):
            self.reports += 1
            self.throttle.warning(
                "cannot accept connections: %s; new clients wait in the listen backlog",
                error.strerror,
            )
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)
