"""The publisher role: the process that runs the real providers.

It keeps every guild loaded (events for guilds nobody watches here must still reach the
bus), mirrors every applied change into the Redis snapshot and publishes it once, in the
same MULTI/EXEC. A single writer task drains a queue, so ``event_applied`` stays instant
and the stream keeps the order in which the core applied the events.

When Redis is lost the local server goes on serving; queued changes are dropped, because
once Redis is back the whole snapshot is rewritten and a ``resync`` tells every edge to
reload from it (chat messages sent during the outage are not replayed: they are ephemeral).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from dback_core.events import ClientIdUpdate, Event, Presence, Refresh
from dback_redis import codec, snapshot
from dback_redis.config import RedisConfig, redacted
from dback_redis.connection import Role

if TYPE_CHECKING:
    from dback_core.server import DbackServer

log = logging.getLogger(__name__)

#: Events queued for the writer before the publisher gives up on them and rewrites instead.
MAX_QUEUE = 100_000
#: Events written (and published) in one MULTI/EXEC at most.
MAX_BATCH = 500


class Publisher(Role):
    """Mirrors the local directory into Redis and publishes each applied event once."""

    def __init__(self, config: RedisConfig) -> None:
        super().__init__(config)
        self.seq = 0
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._down = True

    def start(self, server: DbackServer) -> None:
        self.server = server
        server.keep_loaded = True
        self._task = asyncio.create_task(self._run(), name="dback-redis-publisher")

    def applied(self, event: Event) -> None:
        """Queue ``event`` for the snapshot and the channel (called by ``event_applied``)."""
        if self._down:
            return  # the rewrite after recovery covers it
        if self._queue.qsize() >= MAX_QUEUE:
            log.warning("redis publisher is %d events behind; rewriting instead", MAX_QUEUE)
            self._mark_down()
            return
        self._queue.put_nowait(self._complete(event))

    def _complete(self, event: Event) -> Event:
        """A presence with the member's full record, so edges that do not know the member
        yet (or load it later) can apply it."""
        if not isinstance(event, Presence) or event.delete:
            return event
        guild = self.server.directory.guilds.get(event.server_id)
        user = guild.users.get(event.uid) if guild is not None else None
        if user is None:
            return event
        return Presence(
            event.server_id, event.uid, user["status"], user["username"], user["roleColor"]
        )

    def _mark_down(self) -> None:
        self._down = True
        while not self._queue.empty():
            self._queue.get_nowait()

    async def _run(self) -> None:
        """Write the first snapshot once the server is up, then follow the queue.

        ``startup`` runs before the core has loaded anything, so the first snapshot waits
        for ``server.ready`` (set once every guild is loaded and the server listens).
        """
        while not self.server.ready:
            await asyncio.sleep(0.05)
        backoff = 0.1
        while True:
            try:
                if self._down:
                    await self._rewrite()
                    backoff = 0.1
                    continue
                batch = [await self._queue.get()]
                while len(batch) < MAX_BATCH and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                await self._write(batch)
            except (RedisError, OSError) as error:
                if not self._down:
                    log.warning(
                        "redis %s lost (%s); serving locally, will rewrite the snapshot",
                        redacted(self.config.url),
                        error,
                    )
                self._mark_down()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                # A bug must not stop publishing for good: start over with a full rewrite.
                log.exception("redis publisher failed; rewriting the snapshot")
                self._mark_down()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _rewrite(self) -> None:
        """Rewrite the whole snapshot and tell the edges to reload it (one transaction).

        Events applied from here on are queued again; those applied before the rewrite reads
        the directory are both in it and queued, which is harmless: a presence the edges
        already have changes nothing.
        """
        self._down = False
        async with self.redis.pipeline(transaction=True) as pipe:
            await snapshot.write_all(pipe, self.redis, self.keys, self.server.directory)
            self._publish(pipe, None)
            await pipe.execute()
        log.info(
            "redis snapshot of %d guilds written to %s",
            len(self.server.directory.guilds),
            redacted(self.config.url),
        )

    async def _write(self, batch: list[Event]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for event in batch:
                await self._snapshot(pipe, event)
                self._publish(pipe, event)
            await pipe.execute()

    async def _snapshot(self, pipe: Any, event: Event) -> None:
        directory = self.server.directory
        if isinstance(event, Presence):
            guild = directory.guilds.get(event.server_id)
            user = guild.users.get(event.uid) if guild is not None else None
            snapshot.write_user(pipe, self.keys, event.server_id, user, event.uid)
        elif isinstance(event, ClientIdUpdate):
            snapshot.write_client_id(pipe, self.keys, event.server_id, event.client_id)
        elif isinstance(event, Refresh) and event.server_id is None:
            await snapshot.write_all(pipe, self.redis, self.keys, directory)
        elif isinstance(event, Refresh):
            guild = directory.guilds.get(event.server_id)
            if guild is not None:
                snapshot.write_guild(pipe, self.keys, guild)

    def _publish(self, pipe: Any, event: Event | None) -> None:
        self.seq += 1
        pipe.publish(self.keys.channel, codec.encode(event, self.config.process_id, self.seq))
