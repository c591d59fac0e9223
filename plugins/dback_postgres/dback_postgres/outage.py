"""What the log and the plugin's health say while the database is away or refuses.

A database that stays away is retried many times a minute, one that refuses for good once
a minute - for hours, if nobody is there to fix it. The operator needs one line when the
trouble starts, one when its reason changes, a reminder now and then while it lasts, and
one when it is over; never a line per attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from dback_core.plugin.health import FAILED, SERVING
from dback_postgres.diagnosis import Trouble

log = logging.getLogger(__name__)

#: Seconds between reminders that the same trouble still lasts.
REMIND_EVERY = 600.0

#: ``report(status, reason)``: tells the server how the plugin is (``dback_core.plugin.health``).
Report = Callable[[str, "str | None"], None]


class Outage:
    """The current trouble with the database at ``where``, if any: logged once per change,
    reminded every ``REMIND_EVERY`` seconds, reported as the plugin's health."""

    def __init__(
        self,
        where: str,
        report: Report,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = where
        self.report = report
        self._clock = clock
        #: When the trouble began, and when its reason was last logged (monotonic).
        self._since: float | None = None
        self._logged_at = 0.0
        self._reason: str | None = None

    def trouble(self, trouble: Trouble, delay: float, *, report: bool = True) -> None:
        """An attempt failed with ``trouble``; the next comes in ``delay`` seconds. With
        ``report=False`` the health stays as it is (a working connection was just lost,
        usually restored before anyone could notice)."""
        now = self._clock()
        if self._since is None:
            self._since = now
        if trouble.reason != self._reason:
            self._reason = trouble.reason
            self._logged_at = now
            self._log_new(trouble, delay)
        elif now - self._logged_at >= REMIND_EVERY:
            self._logged_at = now
            log.log(
                _level(trouble),
                "PostgreSQL at %s: still %s after %s (%s)",
                self.where,
                "refused" if trouble.needs_operator else "unavailable",
                _duration(now - self._since),
                trouble.reason,
            )
        else:
            log.debug("PostgreSQL at %s: failed again (%s)", self.where, trouble.cause)
        if report or trouble.needs_operator:
            self.report(trouble.status, trouble.reason)

    def _log_new(self, trouble: Trouble, delay: float) -> None:
        if trouble.needs_operator:
            log.error("%s; checking again in %.1fs", trouble.reason, delay)
        else:
            log.warning(
                "PostgreSQL at %s is unavailable (%s); reconnecting, next attempt in %.1fs",
                self.where,
                trouble.cause,
                delay,
            )

    def over(self) -> None:
        """The database answers and serves: say so once, and report the plugin serving."""
        if self._since is not None:
            log.info(
                "PostgreSQL at %s answers again after %s",
                self.where,
                _duration(self._clock() - self._since),
            )
        self._since = None
        self._reason = None
        self.report(SERVING, None)


def _level(trouble: Trouble) -> int:
    return logging.ERROR if trouble.status == FAILED else logging.WARNING


def _duration(seconds: float) -> str:
    """``12.3s``, ``4m05s`` or ``2h03m``: how long an outage lasted, as a person reads it."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
