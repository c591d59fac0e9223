"""The edge role: a process without providers that serves what the publisher publishes.

Its data hooks read the Redis snapshot, so a freshly started edge serves the current world;
a subscription to the channel applies the other processes' events as they happen, with
``relay=False`` so nothing is echoed back. Whenever the subscription is (re)established -
Redis restarted, the connection was killed, the publisher rewrote its snapshot - messages
may have been missed, so the edge resynchronises: it reloads the guild list and every
loaded guild from the snapshot, sends its viewers the fresh world, and replays the chat it
missed from the stream.

Events the edge's own d-back API produces (``broadcast_presence``, ``broadcast_message``)
go out on the bus too, so every process shows them; the publisher writes them into the
snapshot. While Redis cannot be reached they wait in a bounded outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from redis.exceptions import RedisError

from dback_core import Unavailable
from dback_core.plugin.events import ClientIdUpdate, Event, Message, Presence
from dback_core.plugin.host import GuildView, ListedGuild, PluginHost
from dback_redis import codec, snapshot
from dback_redis.config import RedisConfig, redacted
from dback_redis.connection import Role, complete, retry_backoff
from dback_redis.link import Link

log = logging.getLogger(__name__)

#: Seconds ``startup`` waits at most for the first attempt to subscribe (one that never
#: answers: a connection to a silent host times out after ``SOCKET_TIMEOUT``).
SUBSCRIBE_WAIT = 5.0
#: The kinds of event an edge's own API produces that other processes must see. A refresh
#: is not among them: on an edge it reloads that edge from the snapshot.
SHARED_KINDS = (Presence, Message, ClientIdUpdate)


class Edge(Role):
    """Serves guilds from the snapshot and follows the publisher's event stream."""

    is_edge = True

    def __init__(
        self,
        config: RedisConfig,
        sequence: Iterator[int] | None = None,
        link: Link | None = None,
    ) -> None:
        super().__init__(config, sequence, link)
        self._subscribed = asyncio.Event()
        #: Own events not yet on the bus, each with the time it happened, oldest first.
        self._outbox: deque[tuple[float, Event]] = deque(maxlen=config.chat.history)
        self._wake = asyncio.Event()
        #: Chat pushed out of the full outbox, not reported yet.
        self._overflowed = 0
        self._last_servers: dict[str, dict[str, Any]] = {}
        #: What a publisher that stepped down served, until the snapshot can be read.
        self._kept_servers: dict[str, dict[str, Any]] | None = None
        self._kept_guilds: dict[str, tuple[dict[str, dict[str, Any]], str | None]] = {}
        #: Per guild, the publisher message its last snapshot read reflects.
        self._as_of: dict[str, snapshot.AsOf | None] = {}

    async def start(self, host: PluginHost) -> None:
        """Subscribe before the core loads anything, so no event falls between the two."""
        self.attach(host)
        self._spawn(self.follow(), "dback-redis-edge")
        self._spawn(self._send(), "dback-redis-edge-outbox")
        # Not the subscription itself: when Redis is away, the first refusal says so and
        # the server starts at once (it subscribes later, and resynchronises then).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SUBSCRIBE_WAIT):
                await self.attempted.wait()

    # -- data hooks ------------------------------------------------------------------------

    def keep_serving(
        self, guilds: Mapping[str, ListedGuild], loaded: Mapping[str, GuildView]
    ) -> None:
        """Serve ``guilds`` and the ``loaded`` ones' members as they are until the snapshot
        can be read: a publisher that steps down because Redis is out of reach keeps its
        viewers' world (they would be taken out of their guilds), each part until it is
        read from the snapshot once."""
        self._kept_servers = {key: snapshot.server_record(info) for key, info in guilds.items()}
        # Also what an empty Redis (restarted, no snapshot rewritten yet) leaves it with:
        # a fresh edge's last list is empty, and serving that took every viewer out.
        self._last_servers = self._kept_servers
        self._kept_guilds = {
            key: ({uid: dict(user) for uid, user in guild.members.items()}, guild.client_id)
            for key, guild in loaded.items()
        }

    async def servers(self) -> dict[str, dict[str, Any]]:
        """The snapshot's guild list. While there is none - Redis came back empty and the
        publisher has not rewritten it yet - the last list read is kept, so a Redis restart
        does not empty every viewer's world for a moment."""
        try:
            async with self._reading():
                servers = await snapshot.read_servers(self.redis, self.keys)
        except Unavailable:
            if self._kept_servers is None:
                raise
            return self._kept_servers
        self._kept_servers = None
        if servers is None:
            return self._last_servers
        self._last_servers = servers
        return servers

    async def users(self, server_id: str) -> dict[str, dict[str, Any]]:
        """A guild's members from the snapshot, noting which publisher message it reflects:
        a presence up to that one still on its way is older than what viewers get now. While
        Redis holds no snapshot at all, the members kept by ``keep_serving`` are served."""
        try:
            async with self._reading():
                users, as_of = await snapshot.read_users_as_of(self.redis, self.keys, server_id)
        except Unavailable:
            if server_id not in self._kept_guilds:
                raise
            return self._kept_guilds[server_id][0]
        if as_of is None and not users and server_id in self._kept_guilds:
            return self._kept_guilds[server_id][0]  # Redis came back empty: nothing to read
        self._kept_guilds.pop(server_id, None)
        self._as_of[server_id] = as_of
        return users

    async def client_id(self, server_id: str) -> str | None:
        try:
            async with self._reading():
                return await snapshot.read_client_id(self.redis, self.keys, server_id)
        except Unavailable:
            if server_id not in self._kept_guilds:
                raise
            return self._kept_guilds[server_id][1]

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[None]:
        """A read of the snapshot that fails because Redis is away raises ``Unavailable``:
        the core keeps what it has and logs one line (the subscription reports the outage)."""
        try:
            yield
        except (RedisError, OSError) as error:
            where = redacted(self.config.url)
            raise Unavailable(f"cannot reach Redis at {where}: {error}") from None

    # -- the stream ------------------------------------------------------------------------

    async def subscribed(self) -> None:
        """A subscription made during ``startup`` precedes the first load; any later one
        (a reconnect, Redis coming up after the server started without it, or an elected
        publisher turning edge) needs a resync."""
        assert self.host is not None
        if not self._subscribed.is_set():
            self._subscribed.set()
            if not self.host.ready:
                return
        else:
            log.info("redis subscription re-established; resynchronising")
        await self.resync()

    async def resync(self) -> None:
        """Reload the guild list and every loaded guild from the snapshot, then replay the
        chat missed meanwhile.

        Like the core's periodic reload, a guild's viewers get a new world only when it
        changed: after a short blip nothing did, and thousands of viewers need no resend.
        """
        assert self.host is not None
        if await self.redis.exists(self.keys.servers):
            await self.host.refresh_everything()
        else:
            # Redis came back empty: the publisher's rewrite ends with a ``resync`` message,
            # which brings the edge here again with a snapshot to read.
            log.info("redis has no snapshot yet; keeping the current world until it does")
        await super().resync()

    async def apply(self, envelope: codec.Envelope) -> None:
        """Apply a bus event, unless it is a presence the last snapshot read holds already
        (read while it was on its way): shown after the snapshot, it would take a member
        back to an older state."""
        event = envelope.event
        if isinstance(event, Presence | ClientIdUpdate):
            as_of = self._as_of.get(event.server_id)
            if as_of is not None and as_of.covers(envelope.sender, envelope.seq):
                log.debug("skipped %s/%d: in the snapshot", envelope.sender, envelope.seq)
                return
        await super().apply(envelope)

    # -- the edge's own events -------------------------------------------------------------

    def applied_here(self, event: Event, origin: str | None) -> None:
        """Queue an event of this edge's own API for the bus (called by ``event_applied``)."""
        if origin is None and isinstance(event, SHARED_KINDS):
            assert self.host is not None
            if len(self._outbox) == self._outbox.maxlen and isinstance(self._outbox[0][1], Message):
                self._overflowed += 1  # the oldest chat makes room: reported once sent
            self._outbox.append((time.time(), complete(self.host, event)))
            self._wake.set()

    def carry(self, chat_messages: list[tuple[float, Message]]) -> None:
        """Put ``chat_messages`` (each with the time it happened) on the bus as soon as Redis
        answers: chat a publisher that stepped down here showed and could not publish."""
        for sent_at, message in chat_messages:
            if len(self._outbox) == self._outbox.maxlen and isinstance(self._outbox[0][1], Message):
                self._overflowed += 1
            self._outbox.append((sent_at, message))
        if chat_messages:
            self._wake.set()

    def unsent_chat(self) -> list[tuple[float, Message]]:
        """The chat still waiting for the bus, taken out: an edge elected publisher hands it
        to its publisher, which sends it first (its other events are in the snapshot the
        publisher rewrites). Call it once the edge has stopped."""
        unsent = [(sent_at, event) for sent_at, event in self._outbox if isinstance(event, Message)]
        self._outbox.clear()
        return unsent

    async def _send(self) -> None:
        """Publish the outbox, oldest first; while Redis is away the events wait (chat no
        longer than the replay window, so a reconnect does not bring stale bubbles)."""
        backoff = retry_backoff(self.config)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                batch = list(self._outbox)
                try:
                    async with self.redis.pipeline(transaction=True) as pipe:
                        horizon = time.time() - self.config.chat.replay_seconds
                        too_old = 0
                        for sent_at, event in batch:
                            if not isinstance(event, Message) or sent_at >= horizon:
                                self.publish(pipe, event, sent_at)
                            else:
                                too_old += 1
                        await pipe.execute()
                except (RedisError, OSError) as error:
                    # Once per outage: the retries that follow add nothing.
                    log.log(
                        logging.WARNING if backoff.failures == 0 else logging.DEBUG,
                        "redis %s: %d own events wait for the bus (%s)",
                        redacted(self.config.url),
                        len(self._outbox),
                        error,
                    )
                    await backoff.sleep()
                    continue
                backoff.reset()
                for _ in batch:
                    self._outbox.popleft()
                assert self.host is not None  # sending: started
                self.host.chat_lost(too_old, "older than the replay window when Redis answered")
                self.host.chat_lost(self._overflowed, "beyond the outbox while Redis was away")
                self._overflowed = 0
