"""The publisher role: the process that runs the real providers.

It keeps every guild loaded (events for guilds nobody watches here must still reach the
bus), mirrors every applied change into the Redis snapshot and publishes it once, in the
same MULTI/EXEC. A single writer task drains a queue, so ``event_applied`` stays instant
and the stream keeps the order in which the core applied the events.

When Redis is lost the local server goes on serving; queued changes are dropped, because
once Redis is back the whole snapshot is rewritten and a ``resync`` tells every edge to
reload from it. Chat is in no snapshot: messages applied during the outage wait in a bounded
backlog and go out (and into the replay stream) with the rewrite.

The publisher follows the channel too: edges publish what their own d-back API produces,
and the publisher applies it here and writes it into the snapshot, which it alone keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError

from dback_core.plugin.events import ClientIdUpdate, Event, Message, Presence, Refresh
from dback_core.plugin.host import PluginHost
from dback_redis import chat, codec, snapshot
from dback_redis.config import RedisConfig, redacted
from dback_redis.connection import Role, complete, retry_backoff
from dback_redis.election import Lease, LeaseLost
from dback_redis.link import Link, unreachable

log = logging.getLogger(__name__)

#: Events queued for the writer before the publisher gives up on them and rewrites instead.
MAX_QUEUE = 100_000
#: Events written (and published) in one MULTI/EXEC at most.
MAX_BATCH = 500


class Publisher(Role):
    """Mirrors the local directory into Redis and publishes each applied event once."""

    def __init__(
        self,
        config: RedisConfig,
        sequence: Iterator[int] | None = None,
        lease: Lease | None = None,
        fence: int | None = None,
        on_lease_lost: Callable[[], None] | None = None,
        link: Link | None = None,
    ) -> None:
        super().__init__(config, sequence, link)
        #: An elected publisher writes only while it holds ``lease``, and marks what it
        #: publishes with ``fence``; ``on_lease_lost`` is told when a write finds it gone.
        self.lease = lease
        self.fence = fence
        self._on_lease_lost = on_lease_lost
        #: Changes for the writer: each event, and whether it goes on the channel (False:
        #: an edge's change, already published by the edge, for the snapshot only).
        self._queue: asyncio.Queue[tuple[Event, bool]] = asyncio.Queue()
        self._backlog = chat.Backlog(config.chat)
        self._down = True
        self._writing = False
        #: Set by ``silence``: this publisher writes nothing more, whatever is queued.
        self._silenced = False

    async def start(self, host: PluginHost) -> None:
        """Write the snapshot and publish from here on (the writer waits for the server to
        be ready); keep a subscription like every process."""
        self.attach(host)
        if self._silenced:
            return  # its lease ran out while it was being set up
        host.keep_loaded(True)
        self._spawn(self._run(), "dback-redis-publisher")
        self._spawn(self.follow(), "dback-redis-publisher-follow")

    async def drain(self, timeout: float) -> None:
        """Wait until everything applied here is written and published (a rewrite included,
        when Redis was away), at most ``timeout`` seconds: what a publisher that stops does
        before it gives the lease up, so the next one resumes where it ended."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not self._silenced and (
                    self._down or self._writing or not self._queue.empty()
                ):
                    await asyncio.sleep(0.01)

    def silence(self) -> None:
        """Write and publish nothing more, from this moment: the lease ran out. Its tasks are
        cancelled; ``stop`` waits for them (for a bounded time)."""
        self._silenced = True
        self._mark_down()
        for task in self._tasks:
            task.cancel()

    def carry(self, chat_messages: list[tuple[float, Message]]) -> None:
        """Publish ``chat_messages`` (each with the time it happened) before anything else,
        with the first rewrite: chat this process showed and never got onto the bus, in a
        role it had before (see ``Elected._lead``)."""
        for sent_at, message in chat_messages:
            self._backlog.add(message, sent_at)

    def undelivered(self) -> list[tuple[float, Message]]:
        """The chat applied here that never reached Redis, oldest first, taken out: what a
        publisher that steps down hands on to its edge (see ``Elected._follow``).

        This process's viewers saw it, so its chat ledger counts it as shown and a provider
        released here again resumes after it; dropped with this publisher (as it was), it
        never reached the other processes. What the backlog could not keep is counted."""
        self._mark_down()
        carried = self._backlog.take()
        if self.host is not None:
            self.host.chat_lost(
                self._backlog.take_dropped(), "older than the replay window or beyond the backlog"
            )
        return carried

    def applied_here(self, event: Event) -> None:
        """Queue ``event`` for the snapshot and the channel (called by ``event_applied``)."""
        if self._silenced:
            return
        if self._down:
            if isinstance(event, Message):
                self._backlog.add(event)  # the snapshot rewrite covers everything else
            return
        assert self.host is not None  # not down: started
        self._enqueue(complete(self.host, event), True)

    def _enqueue(self, event: Event, publish: bool) -> None:
        if self._silenced:
            return
        if self._queue.qsize() >= MAX_QUEUE:
            log.warning("redis publisher is %d events behind; rewriting instead", MAX_QUEUE)
            self._mark_down()
            return
        self._queue.put_nowait((event, publish))

    async def apply(self, envelope: codec.Envelope) -> None:
        """Apply another process's event; an edge's change also goes into the snapshot
        (its chat is in the replay stream already)."""
        await super().apply(envelope)
        if envelope.from_edge and not isinstance(envelope.event, Message) and not self._down:
            assert envelope.event is not None
            self._enqueue(envelope.event, False)

    def _mark_down(self) -> None:
        self._down = True
        while not self._queue.empty():
            event, publish = self._queue.get_nowait()
            if publish and isinstance(event, Message):
                self._backlog.add(event)

    async def _run(self) -> None:
        """Write the first snapshot once the server is up, then follow the queue.

        ``startup`` runs before the core has loaded anything, so the first snapshot waits
        until the server is ready (every guild loaded, listening).
        """
        assert self.host is not None
        await self.host.wait_ready()
        backoff = retry_backoff(self.config)
        while True:
            try:
                if self._down:
                    await self._rewrite()
                    backoff.reset()
                    continue
                batch = [await self._queue.get()]
                while len(batch) < MAX_BATCH and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                self._writing = True
                try:
                    await self._write(batch)
                finally:
                    self._writing = False
            except LeaseLost:
                log.warning("redis: the publisher lease passed to another process; not publishing")
                self._mark_down()
                if self._on_lease_lost is not None:
                    self._on_lease_lost()
                return
            except (RedisError, OSError) as error:
                # Once per outage: each retry (a rewrite) fails the same way until Redis is
                # back; and not at all when Redis is out of reach, which the subscription's
                # health already reports.
                log.log(
                    logging.DEBUG if backoff.failures or unreachable(error) else logging.WARNING,
                    "redis %s: cannot write the snapshot (%s); serving locally, rewriting it "
                    "once Redis answers",
                    redacted(self.config.url),
                    error,
                )
                self._mark_down()
                await backoff.sleep()
            except Exception:
                # A bug must not stop publishing for good: start over with a full rewrite.
                log.exception("redis publisher failed; rewriting the snapshot")
                self._mark_down()
                await backoff.sleep()

    async def _rewrite(self) -> None:
        """Rewrite the whole snapshot and tell the edges to reload it (one transaction).

        Events applied from here on are queued again; those applied before the rewrite reads
        the directory are both in it and queued, which is harmless: a presence the edges
        already have changes nothing.
        """
        assert self.host is not None
        self._down = False
        backlog = self._backlog.take()
        self.host.chat_lost(
            self._backlog.take_dropped(), "older than the replay window or beyond the backlog"
        )
        try:
            async with self._transaction() as pipe:
                await snapshot.write_all(pipe, self.redis, self.keys, self.host)
                for sent_at, message in backlog:
                    self.publish(pipe, message, sent_at)
                self.publish(pipe, None)
                self._mark(pipe)
                await pipe.execute()
        except BaseException:
            for sent_at, message in backlog:
                self._backlog.add(message, sent_at)
            raise
        log.info(
            "redis snapshot of %d guilds written to %s%s",
            len(self.host.loaded_guilds()),
            redacted(self.config.url),
            f", with {len(backlog)} chat messages from the outage" if backlog else "",
        )

    async def _write(self, batch: list[tuple[Event, bool]]) -> None:
        try:
            async with self._transaction() as pipe:
                for event, publish in batch:
                    await self._snapshot(pipe, event)
                    if publish:
                        self.publish(pipe, event)
                self._mark(pipe)
                await pipe.execute()
        except BaseException:
            for event, publish in batch:
                if publish and isinstance(event, Message):
                    self._backlog.add(event)
            raise

    def _mark(self, pipe: Any) -> None:
        """Queue the snapshot's mark: the last message published with this write."""
        snapshot.write_version(pipe, self.keys, self.fence, self.config.process_id, self.seq)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        """A MULTI/EXEC pipeline; for an elected publisher, one that runs only while the
        lease is still its own (``LeaseLost`` otherwise)."""
        if self.lease is None:
            async with self.redis.pipeline(transaction=True) as pipe:
                yield pipe
            return
        async with self.lease.lock, self.redis.pipeline(transaction=True) as pipe:
            try:
                # A connection that fails while WATCH is sent is a WatchError too ("A
                # ConnectionError occurred while watching"): told apart from a lost lease
                # below, like one that fails at EXEC.
                await self.lease.guard(pipe)
                yield pipe
            except WatchError:
                if await self.lease.held():
                    raise RedisConnectionError("the connection was lost during a write") from None
                raise LeaseLost("the publisher lease changed hands during a write") from None

    async def _snapshot(self, pipe: Any, event: Event) -> None:
        assert self.host is not None
        if isinstance(event, Presence):
            guild = self.host.guild(event.server_id)
            user = guild.members.get(event.uid) if guild is not None else None
            snapshot.write_user(pipe, self.keys, event.server_id, user, event.uid)
        elif isinstance(event, ClientIdUpdate):
            snapshot.write_client_id(pipe, self.keys, event.server_id, event.client_id)
        elif isinstance(event, Refresh) and event.server_id is None:
            await snapshot.write_all(pipe, self.redis, self.keys, self.host)
        elif isinstance(event, Refresh):
            guild = self.host.guild(event.server_id) if event.server_id is not None else None
            if guild is not None:
                snapshot.write_guild(pipe, self.keys, guild)
