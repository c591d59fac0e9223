"""Which chat messages were delivered, so that none is lost across a reconnection.

A ``NOTIFY`` sent while the listening connection is down reaches nobody. Members and guilds
are simply reloaded after a reconnection, but a chat message is an event, not a state: it
must be delivered by itself. The cursor remembers the highest ``message_id`` delivered and
the ids of the recent ones; after a reconnection the rows above that id, up to
``DBACK_POSTGRES_CHAT_REPLAY`` seconds old, are delivered in ``message_id`` order, and a
notification for a message already delivered is skipped, so nothing arrives twice.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from dback_postgres import queries

log = logging.getLogger(__name__)

#: Most messages delivered after one reconnection; the oldest beyond it are skipped (logged).
REPLAY_LIMIT = 1000
#: Ids of delivered messages remembered to recognise a notification already served.
REMEMBERED = 10_000


class ChatCursor:
    """The delivery record of chat messages, kept across the listener's connections."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        #: Highest message id delivered (or present when the server started); None until
        #: the first connection, whose earlier messages are history, not missed chat.
        self.last_id: int | None = None
        self._recent: deque[int] = deque(maxlen=REMEMBERED)
        self._seen: set[int] = set()

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
        if self.max_age <= 0:
            return []
        newest_first = await connection.fetch(
            queries.MESSAGES_AFTER, self.last_id, self.max_age, REPLAY_LIMIT + 1
        )
        if len(newest_first) > REPLAY_LIMIT:
            log.warning(
                "more than %d chat messages were missed while reconnecting; delivering the "
                "newest %d",
                REPLAY_LIMIT,
                REPLAY_LIMIT,
            )
        return self.fresh(list(reversed(newest_first[:REPLAY_LIMIT])))
