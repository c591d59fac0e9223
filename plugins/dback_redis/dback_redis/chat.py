"""Recent chat kept in a Redis stream, so a process that missed messages can replay them.

Presences need no history: the snapshot holds every member's current state, and a resync
reads it. Chat is different - a message that went by while an edge was cut off from Redis
is in no snapshot. So every chat message published on the bus is also appended, in the same
MULTI/EXEC, to the stream ``P:chat`` (its entry holds the very bus message, sender and
sequence number included), trimmed to ``DBACK_REDIS_CHAT_HISTORY`` entries. A process that
resynchronises reads the stream and applies the messages it has not seen, in order, that
are younger than ``DBACK_REDIS_CHAT_REPLAY_SECONDS``: a speech bubble minutes late is
worse than none.

A process that cannot reach Redis keeps the chat it produces in a bounded local backlog and
appends it once Redis answers, so chat also survives a Redis restart (Redis may come back
empty: the stream is rebuilt from the backlogs).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from dback_core.plugin.events import Message
from dback_redis import codec
from dback_redis.snapshot import Keys

#: Field of a stream entry holding the bus message, and the one holding the sender's clock.
MESSAGE_FIELD = "m"
TIME_FIELD = "t"


@dataclass(frozen=True)
class ChatLimits:
    """How much chat history is kept in Redis and locally, and how old a replay may be."""

    history: int = 1000
    replay_seconds: float = 60.0


def append(pipe: Any, keys: Keys, limits: ChatLimits, raw: str, sent_at: float) -> None:
    """Queue one bus chat message for the stream (trimmed approximately: cheap in Redis)."""
    pipe.xadd(
        keys.chat,
        {MESSAGE_FIELD: raw, TIME_FIELD: f"{sent_at:.3f}"},
        maxlen=limits.history,
        approximate=True,
    )


class Backlog:
    """Chat produced while Redis could not be reached, oldest first, bounded in count and age.

    What it cannot keep (beyond ``history`` messages, or older than the replay window when
    Redis answers again) is counted in ``dropped``, for the publisher to report as lost."""

    def __init__(self, limits: ChatLimits) -> None:
        self.limits = limits
        self._messages: deque[tuple[float, Message]] = deque(maxlen=limits.history)
        self.dropped = 0

    def add(self, message: Message, sent_at: float | None = None) -> None:
        if len(self._messages) == self._messages.maxlen:
            self.dropped += 1
        self._messages.append((time.time() if sent_at is None else sent_at, message))

    def take(self) -> list[tuple[float, Message]]:
        """Everything still young enough to be worth replaying; the backlog is emptied."""
        horizon = time.time() - self.limits.replay_seconds
        kept = [(sent_at, message) for sent_at, message in self._messages if sent_at >= horizon]
        self.dropped += len(self._messages) - len(kept)
        self._messages.clear()
        return kept

    def take_dropped(self) -> int:
        """How many messages were dropped since the last call."""
        dropped, self.dropped = self.dropped, 0
        return dropped

    def __len__(self) -> int:
        return len(self._messages)


class Replay:
    """What one process has seen of each sender's chat, and the stream entries it missed."""

    def __init__(self, own_id: str, limits: ChatLimits) -> None:
        self.own_id = own_id
        self.limits = limits
        #: Highest sequence number of a chat message applied, per sender.
        self.seen: dict[str, int] = {}
        #: Chat from senders this process has never heard of is replayed only from here on:
        #: a process that starts does not replay the history before it.
        self.since = time.time()
        #: Missed messages found too old to replay, not reported yet (see ``take_too_old``).
        self.too_old = 0

    def take_too_old(self) -> int:
        """How many missed messages were too old to replay since the last call."""
        count, self.too_old = self.too_old, 0
        return count

    def saw(self, sender: str, seq: int) -> bool:
        """Record a live chat message; False when it was already applied (by a replay)."""
        if seq <= self.seen.get(sender, -1):
            return False
        self.seen[sender] = seq
        return True

    async def missed(self, redis: Redis, keys: Keys) -> list[codec.Envelope]:
        """The chat in the stream this process has not applied, oldest first.

        Read from the newest end: the stream is trimmed approximately, so it often holds more
        than ``history`` entries, and reading that many from the oldest end left out the
        newest ones - exactly the chat a resynchronising process has missed."""
        entries = await redis.xrevrange(keys.chat, max="+", min="-", count=self.limits.history)
        return list(self._unseen(reversed(entries or [])))

    def _unseen(
        self, entries: Iterable[tuple[object, Mapping[bytes | str, bytes | str] | None]]
    ) -> Iterable[codec.Envelope]:
        horizon = max(time.time() - self.limits.replay_seconds, 0.0)
        for _entry_id, fields in entries:
            if fields is None:
                continue  # an entry trimmed while being read
            try:
                sent_at = float(fields.get(TIME_FIELD, "0"))
                envelope = codec.decode(fields.get(MESSAGE_FIELD, ""))
            except (ValueError, codec.BadMessage):
                continue
            if envelope.sender == self.own_id or envelope.event is None:
                continue
            if envelope.sender not in self.seen and sent_at < self.since:
                continue  # history from before this process started
            if sent_at < horizon:
                if envelope.seq > self.seen.get(envelope.sender, -1):
                    self.too_old += 1  # missed, and too late to show now
                continue
            if self.saw(envelope.sender, envelope.seq):
                yield envelope
