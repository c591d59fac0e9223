"""File descriptors: as many as the system allows, never all of them for sockets, and no
log storm when they run out anyway.

Every client holds one descriptor, and the usual soft limit (1024) is far below
``DBACK_MAX_CONNECTIONS``; the hard limit is what the administrator granted, so ``dback
serve`` raises the soft limit to it. The server then holds at most ``connection_capacity``
sockets - the limit minus a tenth kept for plugins, files and the resolver - so a socket past
it is accepted and refused at once instead of failing to be accepted.

When descriptors run out anyway, asyncio's accept loop (Python 3.11) logs a traceback and
schedules a retry for every remaining turn of its loop - as many as the ``backlog`` it was
given - and the retries multiply: 4096 turns gave tens of thousands of tracebacks a second,
starved the viewers and kept a stopping server busy for seconds. The server therefore gives
asyncio an ``ACCEPT_BATCH`` of one (``set_listen_backlog`` restores the kernel's queue) and
``AcceptErrors`` turns the reports into one rate-limited line.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
from collections.abc import Iterable
from typing import Any

from dback_core.wire.limits import LogThrottle

log = logging.getLogger(__name__)

#: The errors asyncio's accept loop treats as "out of resources, retry later".
OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

#: Connections asyncio accepts per readiness event of a listening socket. One: see above.
ACCEPT_BATCH = 1

#: Descriptors kept out of ``connection_capacity``: this share of the limit, at least the
#: minimum (plugins' database and Redis pools, static files, threads).
HEADROOM_SHARE = 0.1
HEADROOM_MIN = 32


def raise_open_file_limit() -> int:
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
    return soft


def connection_capacity(max_connections: int, chosen: bool = True) -> int:
    """``max_connections``, lowered to what the open-file limit allows: with a WARNING when
    the operator chose that number, at INFO when it is only the default (a machine whose
    limit is below the default is not a mistake worth a warning on every start)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    capacity = max(soft - max(int(soft * HEADROOM_SHARE), HEADROOM_MIN), 1)
    if capacity >= max_connections:
        return max_connections
    log.log(
        logging.WARNING if chosen else logging.INFO,
        "open files: the limit %d allows %d connections, fewer than DBACK_MAX_CONNECTIONS=%d;"
        " more are refused with 503",
        soft,
        capacity,
        max_connections,
    )
    return capacity


def set_listen_backlog(listening: Iterable[Any], backlog: int) -> None:
    """Give the listening sockets the kernel queue ``backlog``, whatever asyncio was told."""
    for wrapped in listening:
        with wrapped.dup() as duplicate:
            duplicate.listen(backlog)


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
        if isinstance(error, ValueError) and "_start_serving" in repr(context.get("handle")):
            # asyncio's retry after EMFILE found the listening socket closed: we stopped.
            log.debug("accept retry after the listener closed: %s", error)
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)
