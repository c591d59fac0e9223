"""Which chat messages this process has shown, by their source's own position.

A chat message is an event, not a state: shown twice, a viewer sees two speech bubbles. A
message that carries its source's position (``Message.source`` and ``position``) can arrive
more than once - a provider replaying after a reconnect, a bus publisher that took over and
resumed a little before where the last one stopped, a chat replay stream - so the ledger
remembers the recent positions of each source and lets each one through once. Memory is
bounded: ``REMEMBERED`` positions per source; a position at or below the ones forgotten counts
as already shown (it can only be a replay of old history).

The ledger also knows the highest position shown per source, and positions a bus handed
over (``resume``): together they say where a provider that starts here picks up.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from dback_core.plugin.events import Message

#: Positions remembered per source.
REMEMBERED = 20_000


class _Seen:
    """The recent positions of one source, and the floor below which they are forgotten."""

    __slots__ = ("floor", "highest", "order", "positions")

    def __init__(self) -> None:
        self.positions: set[int] = set()
        self.order: deque[int] = deque()
        self.highest = -1
        self.floor = -1

    def add(self, position: int) -> bool:
        if position in self.positions or position <= self.floor:
            return False
        if len(self.order) >= REMEMBERED:
            forgotten = self.order.popleft()
            self.positions.discard(forgotten)
            self.floor = max(self.floor, forgotten)
        self.positions.add(position)
        self.order.append(position)
        self.highest = max(self.highest, position)
        return True


class ChatLedger:
    """The chat positions shown here, per source, and where providers resume."""

    def __init__(self) -> None:
        self._sources: dict[str, _Seen] = {}
        self._handed: dict[str, int] = {}
        #: Messages not shown because they had been shown already.
        self.duplicates = 0

    def admit(self, message: Message) -> bool:
        """Whether ``message`` is to be shown: False for a (source, position) shown before."""
        if message.source is None or message.position is None:
            return True
        seen = self._sources.get(message.source)
        if seen is None:
            seen = self._sources[message.source] = _Seen()
        if seen.add(message.position):
            return True
        self.duplicates += 1
        return False

    def resume(self, positions: Mapping[str, int]) -> None:
        """Positions up to which each source's chat was delivered elsewhere (a bus's record
        of what its last publisher published)."""
        for source, position in positions.items():
            self._handed[source] = max(position, self._handed.get(source, position))

    def resume_position(self, source: str) -> int | None:
        """The highest position of ``source`` delivered: handed over, or shown here; None
        when nothing is known (a provider then starts from now)."""
        seen = self._sources.get(source)
        known = [position for position in (self._handed.get(source),) if position is not None]
        if seen is not None and seen.highest >= 0:
            known.append(seen.highest)
        return max(known) if known else None
