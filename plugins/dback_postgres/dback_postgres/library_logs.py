"""asyncpg's own warnings, one line each.

While the database is away, asyncpg's pool tries to reopen the connections it keeps
(``DBACK_POSTGRES_POOL_MIN``) and logs every failed try with its whole traceback - some
twenty lines saying only what the exception's one line says, once a second at first and
then every minute, for as long as the outage lasts. The listener already tells the operator
what is wrong; what asyncpg adds is kept to one line, logged when it first appears and again
at most every ``outage.REMIND_EVERY`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from dback_postgres.database import describe
from dback_postgres.outage import REMIND_EVERY

#: asyncpg's logger that logs tracebacks (the pool's).
ASYNCPG_LOGGERS = ("asyncpg.pool",)
#: Distinct lines remembered for the repeat check; the oldest is forgotten first.
REMEMBERED = 64


class OneLine(logging.Filter):
    """Turns a record with a traceback into ``message: Type: text`` without it, and lets the
    same line through again only after ``every`` seconds."""

    def __init__(self, every: float = REMIND_EVERY, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.every = every
        self._clock = clock
        self._last_seen: OrderedDict[str, float] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[1] is None:
            return True
        record.msg = f"{record.getMessage()}: {describe(record.exc_info[1])}"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        now = self._clock()
        last = self._last_seen.pop(record.msg, None)
        if last is not None and now - last < self.every:
            self._last_seen[record.msg] = last
            return False
        self._last_seen[record.msg] = now
        while len(self._last_seen) > REMEMBERED:
            self._last_seen.popitem(last=False)
        return True


def quiet_asyncpg_tracebacks() -> None:
    """Install ``OneLine`` on asyncpg's loggers, once per process (every server's plugin
    calls this)."""
    for name in ASYNCPG_LOGGERS:
        library = logging.getLogger(name)
        if not any(isinstance(existing, OneLine) for existing in library.filters):
            library.addFilter(OneLine())
