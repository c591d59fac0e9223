"""Stopping tasks within a deadline: cancel, wait a moment, then abandon what did not end.

``task.cancel()`` is a request. A task that is inside a library's cleanup when it arrives (a
client closing its connection, a lock it waits for) may take its time to end, or never end
(a paused process wakes up to connections whose far end moved on). Whoever must stop now -
a publisher that lost its lease, a server putting providers on standby - cannot wait for it:
``cancel_within`` gives the tasks a bounded time, logs one line naming those that did not
end, and keeps them referenced (a task nobody references may be collected mid-flight) until
they finish on their own, when their outcome is collected quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["ABANDONED", "CANCEL_GRACE", "cancel_within"]

#: Seconds a cancelled task gets to end before it is abandoned.
CANCEL_GRACE = 1.0

#: Tasks abandoned and still running, kept referenced until they end.
ABANDONED: set[asyncio.Task[Any]] = set()


async def cancel_within(
    tasks: Iterable[asyncio.Task[Any]], what: str, seconds: float = CANCEL_GRACE
) -> list[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait up to ``seconds`` for them; those still running are
    abandoned, logged in one WARNING line (``what`` says whose they are), and returned.

    The tasks' results and errors are not raised here: a task being stopped has nothing
    left to say to its stopper. Cancelling the caller cancels only the waiting.
    """
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    try:
        if pending:
            await asyncio.wait(pending, timeout=seconds)
    finally:
        for task in pending:
            if task.done():
                _collect(task)
            else:
                ABANDONED.add(task)
                task.add_done_callback(_forget)
    stuck = [task for task in pending if not task.done()]
    if stuck:
        log.warning(
            "%s: %d task(s) did not end within %.1fs of cancellation; abandoned: %s",
            what,
            len(stuck),
            seconds,
            ", ".join(task.get_name() for task in stuck),
        )
    return stuck


def _forget(task: asyncio.Task[Any]) -> None:
    ABANDONED.discard(task)
    _collect(task)


def _collect(task: asyncio.Task[Any]) -> None:
    """Retrieve a finished task's outcome, so asyncio does not log it as never retrieved."""
    with contextlib.suppress(asyncio.CancelledError):
        task.exception()
