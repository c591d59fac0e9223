"""Whether this process reaches Redis, as its subscription tells: what is logged and reported.

The subscription is retried every few seconds for as long as Redis stays away, possibly for
hours. The operator needs one line when Redis cannot be reached (``unreachable`` when the
subscription never existed, ``subscription lost`` when it did), one when the reason
changes, a reminder every ``REMIND_EVERY`` seconds and one when Redis answers again - never
a line per attempt. The plugin's health follows: ``unavailable``, with the reason,
until the subscription is back. The core logs that change of health as the one WARNING of
the outage, so the link's own first line, which says which it was, is INFO once a host
hears of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dback_core.plugin.health import SERVING, UNAVAILABLE
from dback_core.plugin.host import PluginHost

log = logging.getLogger(__name__)

#: Seconds between reminders that Redis still cannot be reached.
REMIND_EVERY = 600.0


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` says Redis is out of reach (refused, cut, silent) - which the
    subscription notices and reports itself - rather than that it refused a command."""
    return isinstance(error, RedisConnectionError | RedisTimeoutError | OSError)


class Link:
    """The state of one process's subscription to the Redis at ``where`` (no password),
    shared by the roles the process takes in turn; its health goes to ``host`` once set."""

    def __init__(self, where: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.where = where
        self.host: PluginHost | None = None
        self._clock = clock
        #: Whether a subscription ever existed (so a failure is a loss, not a first refusal).
        self._subscribed_once = False
        #: When Redis was first missed in the current outage, and what was logged when.
        self._down_since: float | None = None
        self._reason: str | None = None
        self._logged_at = 0.0

    def up(self) -> None:
        """The subscription is established: say so if Redis was missed, report serving."""
        if self._down_since is not None:
            log.info(
                "redis %s answers again after %.1fs", self.where, self._clock() - self._down_since
            )
        self._down_since = None
        self._reason = None
        self._subscribed_once = True
        self._report(SERVING, None)

    def failed(self, error: BaseException) -> None:
        """An attempt to subscribe failed, or the subscription was lost, with ``error``."""
        reason = str(error) or type(error).__name__
        now = self._clock()
        if self._log_news(reason, now):
            self._reason = reason
            self._logged_at = now
        self._report(UNAVAILABLE, f"cannot reach Redis at {self.where}: {reason}")

    def _log_news(self, reason: str, now: float) -> bool:
        """Log what is news about this failure; False when nothing is (a DEBUG line only)."""
        if self._down_since is None:
            self._down_since = now
            # The health report (below) is the WARNING when a host hears of it.
            level = logging.INFO if self.host is not None else logging.WARNING
            if self._subscribed_once:
                log.log(level, "redis %s subscription lost (%s); retrying", self.where, reason)
            else:
                log.log(
                    level,
                    "redis %s unreachable (%s); serving without it and retrying",
                    self.where,
                    reason,
                )
        elif reason != self._reason:
            log.warning("redis %s still unreachable, now: %s", self.where, reason)
        elif now - self._logged_at >= REMIND_EVERY:
            minutes = (now - self._down_since) / 60
            log.warning(
                "redis %s still unreachable after %.0f min (%s)", self.where, minutes, reason
            )
        else:
            log.debug("redis %s: failed again (%s)", self.where, reason)
            return False
        return True

    def _report(self, status: str, reason: str | None) -> None:
        if self.host is not None:
            self.host.report_health(status, reason)
