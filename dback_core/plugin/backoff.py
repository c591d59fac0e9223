"""Retry delays: one ``Backoff`` for every loop that reconnects to something.

Every long-lived connection dback keeps - an event source, a database LISTEN, a Discord
gateway, a Redis subscription - fails now and then and must be tried again: soon after a
blip, ever more slowly while the other side stays away (so a dead service is not hammered),
and soon again once it was back. Written by hand in each loop, those rules drift apart and
each loop gets one of them wrong; here they are written once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delays that start at ``first`` and grow by ``factor`` up to ``ceiling``.

    Call ``next()`` (or ``await sleep()``) after each failure and ``reset()`` after a
    success. With ``reset_after``, an attempt that lasted at least that many seconds (from
    ``attempt()``) counts as a success too: a stream that ran for an hour and then broke
    is retried soon, not after the delay of its last outage. ``jitter`` (0 to 1) takes up to
    that fraction off each delay at random, so that many processes cut off together do not
    come back in lockstep.
    """

    def __init__(
        self,
        first: float,
        ceiling: float,
        *,
        factor: float = 2.0,
        jitter: float = 0.0,
        reset_after: float | None = None,
        random_fraction: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if first < 0 or ceiling < first:
            raise ValueError(f"need 0 <= first <= ceiling, got first={first} ceiling={ceiling}")
        if factor < 1:
            raise ValueError(f"factor must be at least 1, got {factor}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {jitter}")
        self.first = first
        self.ceiling = ceiling
        self.factor = factor
        self.jitter = jitter
        self.reset_after = reset_after
        self._random = random_fraction
        self._clock = clock
        self._delay = first
        self._attempt_started: float | None = None
        #: Delays handed out since the last reset: the failures in a row.
        self.failures = 0

    @property
    def upcoming(self) -> float:
        """The delay the next failure will wait (before jitter)."""
        return self._delay

    def attempt(self) -> None:
        """Mark the start of an attempt, for ``reset_after``."""
        self._attempt_started = self._clock()

    def reset(self) -> None:
        """A success: the next failure waits ``first`` again."""
        self._delay = self.first
        self.failures = 0

    def next(self) -> float:
        """The seconds to wait after a failure now; the following failure waits longer."""
        started, self._attempt_started = self._attempt_started, None
        if (
            self.reset_after is not None
            and started is not None
            and self._clock() - started >= self.reset_after
        ):
            self.reset()
        delay = self._delay
        self._delay = min(self._delay * self.factor, self.ceiling)
        self.failures += 1
        if self.jitter:
            delay -= delay * self.jitter * self._random()
        return delay

    async def sleep(self, stop: asyncio.Event | None = None) -> bool:
        """Wait ``next()`` seconds; True when ``stop`` was set first (stop retrying), at once
        if it already is."""
        delay = self.next()
        if stop is None:
            await asyncio.sleep(delay)
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        return stop.is_set()
