"""How long to wait before each IDENTIFY.

Discord lets ``max_concurrency`` shards identify per 5 seconds, so a sharded bot starts its
shards in waves ``reidentify_delay`` apart. A shard whose new sessions keep being
invalidated (op 9, e.g. during a Discord incident) waits twice as long each time, up to
``reidentify_max``: retrying at a fixed pace would spend the day's session starts in
minutes. A session that stays up ``stable_session`` seconds starts the doubling over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class IdentifyStep:
    """The wait before one IDENTIFY; ``again`` when the shard identified before in this
    client (a new session after a lost one), ``streak`` how many in a row since its last
    stable session."""

    delay: float
    again: bool
    streak: int = 0


class IdentifyPace:
    """Per shard: whether it identified yet, its streak of short sessions, when it was ready."""

    def __init__(
        self,
        first: float,
        ceiling: float,
        stable: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first = first
        self.ceiling = max(first, ceiling)
        self.stable = stable
        self._clock = clock
        self._identified: set[int] = set()
        self._streaks: dict[int, int] = {}
        self._ready_at: dict[int, float] = {}

    def next(self, shard_id: int, initial: bool, max_concurrency: int = 1) -> IdentifyStep:
        """The wait before ``shard_id`` identifies; ``initial`` as discord.py says it."""
        ready_at = self._ready_at.pop(shard_id, None)
        if shard_id not in self._identified:
            self._identified.add(shard_id)
            if initial or shard_id % max(1, max_concurrency):
                return IdentifyStep(0.0, again=False)
            return IdentifyStep(self.first, again=False)
        if ready_at is not None and self._clock() - ready_at >= self.stable:
            self._streaks[shard_id] = 0
        streak = self._streaks.get(shard_id, 0) + 1
        self._streaks[shard_id] = streak
        delay = min(self.ceiling, self.first * 2 ** (streak - 1))
        return IdentifyStep(delay, again=True, streak=streak)

    def ready(self, shard_id: int) -> None:
        """The shard's session is up (READY and its guilds): time its stability from now."""
        self._ready_at[shard_id] = self._clock()
