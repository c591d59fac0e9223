"""Which chat messages were delivered, so that none is lost across a reconnection.

A ``NOTIFY`` sent while the listening connection is down reaches nobody. Members and guilds
are simply reloaded after a reconnection, but a chat message is an event, not a state: it
must be delivered by itself. The cursor remembers the highest ``message_id`` delivered and
the ids of the recent ones; after a reconnection the rows above that id, up to
``DBACK_POSTGRES_CHAT_REPLAY`` seconds old, are delivered in ``message_id`` order, and a
notification for a message already delivered is skipped, so nothing arrives twice.

Under a bus (``dback-redis``) another process may have delivered chat until a moment ago: the
cursor then starts where that publisher stopped (``PluginHost.resume_position``) instead of
at the newest row, and delivers the rows after it - a handover loses nothing, and what it
delivers twice the core shows once. Rows too old to replay, or more than one replay holds,
are counted as lost (``PluginHost.chat_lost``) and logged, never dropped silently.

Positions are ids: a row whose id was taken before a newer row's but committed after the
cursor moved past it is not replayed (writers that insert chat one row at a time, as the
triggers' callers do, never cause it).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from dback_postgres import queries

log = logging.getLogger(__name__)

#: Most messages delivered after one reconnection; the oldest beyond it are skipped (logged).
REPLAY_LIMIT = 1000
#: Ids of delivered messages remembered to recognise a notification already served.
REMEMBERED = 10_000


class ChatCursor:
    """The delivery record of chat messages, kept across the listener's connections."""

    def __init__(
        self, max_age: float, lost: Callable[[int, str], None] = lambda _count, _reason: None
    ) -> None:
        self.max_age = max_age
        #: Told how many messages could not be delivered, and why.
        self.lost = lost
        #: Highest message id delivered (or present when the server started); None until
        #: the first connection, whose earlier messages are history, not missed chat.
        self.last_id: int | None = None
        self._recent: deque[int] = deque(maxlen=REMEMBERED)
        self._seen: set[int] = set()

    def resume(self, position: int | None) -> None:
        """Deliver from after ``position`` on (chat up to it was delivered by another
        process); None changes nothing."""
        if position is not None and (self.last_id is None or position > self.last_id):
            self.last_id = position

    def fresh(self, rows: list[Any]) -> list[Any]:
        """The rows not delivered yet, recorded as delivered now."""
        new = []
        for row in rows:
            message_id = row["message_id"]
            if message_id in self._seen:
                continue
            if len(self._recent) == self._recent.maxlen:
                self._seen.discard(self._recent[0])
            self._recent.append(message_id)
            self._seen.add(message_id)
            if self.last_id is None or message_id > self.last_id:
                self.last_id = message_id
            new.append(row)
        return new

    async def missed(self, connection: Any) -> list[Any]:
        """The messages inserted since the last one delivered (called once ``LISTEN`` is on,
        so any newer message is notified and later skipped as delivered)."""
        if self.last_id is None:
            self.last_id = await connection.fetchval(queries.LAST_MESSAGE_ID)
            return []
        too_old = await connection.fetchval(
            queries.MESSAGES_TOO_OLD, self.last_id, max(self.max_age, 0.0)
        )
        self.lost(too_old, "older than the replay window")
        if self.max_age <= 0:
            self.last_id = await connection.fetchval(queries.LAST_MESSAGE_ID)
            return []
        newest_first = await connection.fetch(
            queries.MESSAGES_AFTER, self.last_id, self.max_age, REPLAY_LIMIT + 1
        )
        if len(newest_first) > REPLAY_LIMIT:
            oldest_kept = newest_first[REPLAY_LIMIT - 1]["message_id"]
            skipped = await connection.fetchval(
                queries.MESSAGES_BETWEEN, self.last_id, oldest_kept, self.max_age
            )
            self.lost(skipped, f"more than {REPLAY_LIMIT} to replay")
        return self.fresh(list(reversed(newest_first[:REPLAY_LIMIT])))
