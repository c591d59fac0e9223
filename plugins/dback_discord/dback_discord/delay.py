"""Chat held back for a guild's ``chat_delay``, so that a moderator's delete can still stop it.

A moderation bot removes spam or slurs within a second or two, but a relayed bubble is on
every viewer's screen by then. With a delay, each message waits in memory; a
MESSAGE_DELETE (or a bulk delete) meanwhile cancels it, and nobody ever sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

#: Messages held at once, across guilds; beyond this new ones are dropped, not shown early.
HOLD_LIMIT = 10_000


class HeldMessages:
    """Message ids waiting out their delay, each with what releases it."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = HOLD_LIMIT if limit is None else limit
        self._held: dict[int, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, message_id: int, delay: float, release: Callable[[], None]) -> bool:
        """Call ``release`` after ``delay`` seconds unless cancelled; False when full. A
        message already held (the same id delivered twice) keeps its first release."""
        if message_id in self._held:
            return True
        if len(self._held) >= self.limit:
            return False
        loop = asyncio.get_running_loop()
        self._held[message_id] = loop.call_later(delay, self._release, message_id, release)
        return True

    def _release(self, message_id: int, release: Callable[[], None]) -> None:
        self._held.pop(message_id, None)
        release()

    def cancel(self, message_id: int) -> bool:
        """Forget the message (it was deleted); whether it was still held."""
        handle = self._held.pop(message_id, None)
        if handle is None:
            return False
        handle.cancel()
        return True

    def cancel_all(self) -> None:
        for handle in self._held.values():
            handle.cancel()
        self._held.clear()
