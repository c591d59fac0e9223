"""Discord's daily budget of session starts (IDENTIFYs), kept so that it is never used up.

Discord allows a bot a number of session starts a day (``session_start_limit`` of
``GET /gateway/bot``, 1,000 for most bots) and resets the bot's token once they run out:
the bot is then down until its owner puts a new token in place by hand. A gateway that
keeps invalidating sessions (op 9) makes discord.py identify again and again, so the count
is kept here, and identifying stops while a reserve is still left: the bot starts again by
itself after Discord's reset, and its owner can restart it at once with the reserve.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

#: How long Discord's count lasts when it has not said (it always does).
DAY = 86_400.0


@dataclass(frozen=True)
class SessionStartLimit:
    """``session_start_limit`` as ``GET /gateway/bot`` reports it, ``reset_after`` in seconds."""

    total: int
    remaining: int
    reset_after: float
    max_concurrency: int

    @classmethod
    def from_gateway(cls, data: Mapping[str, Any]) -> SessionStartLimit:
        """Read Discord's answer; ``reset_after`` arrives in milliseconds."""
        return cls(
            total=int(data["total"]),
            remaining=int(data["remaining"]),
            reset_after=float(data["reset_after"]) / 1000,
            max_concurrency=max(1, int(data.get("max_concurrency", 1))),
        )


class SessionStartsSpent(Exception):
    """Identifying once more would eat into the reserve: wait for Discord's reset."""

    def __init__(self, remaining: int, total: int, reserve: int, wait: float) -> None:
        self.wait = wait
        self.reset_at = datetime.now(UTC) + timedelta(seconds=wait)
        super().__init__(
            f"only {remaining} of the bot's {total} daily session starts are left and dback "
            f"keeps {reserve} in reserve ([bot] session_reserve), so it stops identifying "
            f"until Discord resets the count at {self.reset_at:%Y-%m-%d %H:%M:%S} UTC "
            f"(in {wait:.0f}s) and tries again then. Repeated invalid sessions spend them: "
            "check that no other program logs in with this token"
        )


class SessionBudget:
    """The session starts left, counted down at each IDENTIFY between two reads of
    Discord's figure (each new client reads it again)."""

    def __init__(self, reserve: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.reserve = reserve
        self._clock = clock
        self.limit: SessionStartLimit | None = None
        self.remaining = 0
        self._resets_at = 0.0

    @property
    def max_concurrency(self) -> int:
        """How many shards Discord lets identify at once (1 until known)."""
        return self.limit.max_concurrency if self.limit is not None else 1

    def update(self, limit: SessionStartLimit) -> None:
        self.limit = limit
        self.remaining = limit.remaining
        self._resets_at = self._clock() + limit.reset_after

    def spend(self, starts: int = 1) -> None:
        """Count ``starts`` IDENTIFYs about to be sent, or raise ``SessionStartsSpent`` when
        they would leave fewer than the reserve. Unknown limits (never read) spend nothing."""
        limit = self.limit
        if limit is None:
            return
        now = self._clock()
        if now >= self._resets_at:
            # Discord's count has been reset since it was read: a whole day's worth again.
            self.remaining = limit.total
            self._resets_at = now + (limit.reset_after if limit.reset_after > 0 else DAY)
        if self.remaining - starts < self.reserve:
            raise SessionStartsSpent(
                self.remaining, limit.total, self.reserve, self._resets_at - now
            )
        self.remaining -= starts

    def describe(self) -> str | None:
        if self.limit is None:
            return None
        return f"session starts {self.remaining}/{self.limit.total} left today"
