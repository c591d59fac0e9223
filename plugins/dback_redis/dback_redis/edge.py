"""The edge role: a process without providers that serves what the publisher publishes.

Its data hooks read the Redis snapshot, so a freshly started edge serves the current world;
a subscription to the channel applies the publisher's events as they happen, with
``relay=False`` so nothing is echoed back. Whenever the subscription is (re)established -
Redis restarted, the connection was killed, the publisher rewrote its snapshot - messages
may have been missed, so the edge resynchronises: it reloads the guild list and every
loaded guild from the snapshot and sends its viewers the fresh world.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from dback_redis import codec, snapshot
from dback_redis.config import RedisConfig, redacted
from dback_redis.connection import Role

if TYPE_CHECKING:
    from dback_core.server import DbackServer

log = logging.getLogger(__name__)

#: Seconds ``startup`` waits for the first subscription before serving without it.
SUBSCRIBE_WAIT = 5.0


class Edge(Role):
    """Serves guilds from the snapshot and follows the publisher's event stream."""

    def __init__(self, config: RedisConfig) -> None:
        super().__init__(config)
        #: Remote events applied and resyncs done, for tests and diagnostics.
        self.applied = 0
        self.resyncs = 0
        self._last_seq: dict[str, int] = {}
        self._subscribed = asyncio.Event()

    async def start(self, server: DbackServer) -> None:
        """Subscribe before the core loads anything, so no event falls between the two."""
        self.server = server
        self._task = asyncio.create_task(self._follow(), name="dback-redis-edge")
        try:
            await asyncio.wait_for(self._subscribed.wait(), SUBSCRIBE_WAIT)
        except TimeoutError:
            log.warning(
                "redis %s unreachable; serving without it until it answers",
                redacted(self.config.url),
            )

    # -- data hooks ------------------------------------------------------------------------

    async def servers(self) -> dict[str, dict[str, Any]]:
        return await snapshot.read_servers(self.redis, self.keys)

    async def users(self, server_id: str) -> dict[str, dict[str, Any]]:
        return await snapshot.read_users(self.redis, self.keys, server_id)

    async def client_id(self, server_id: str) -> str | None:
        return await snapshot.read_client_id(self.redis, self.keys, server_id)

    # -- the stream ------------------------------------------------------------------------

    async def _follow(self) -> None:
        """Keep a subscription open for as long as the server runs."""
        backoff = 0.1
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.keys.channel)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    backoff = 0.1
                    if message["type"] == "subscribe":
                        await self._subscribed_now()
                    elif message["type"] == "message":
                        await self._receive(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                log.warning(
                    "redis %s subscription lost (%s); retrying", redacted(self.config.url), error
                )
            except Exception:
                # A bug must not end the subscription for good: log it and start over,
                # which resynchronises.
                log.exception("redis subscription failed; retrying")
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _subscribed_now(self) -> None:
        """A subscription made during ``startup`` precedes the first load; any later one
        (a reconnect, or Redis coming up after the server started without it) needs a
        resync."""
        if not self.server.ready:
            self._subscribed.set()
            return
        log.info("redis subscription re-established; resynchronising")
        await self.resync()

    async def _receive(self, raw: str) -> None:
        try:
            envelope = codec.decode(raw)
        except codec.BadMessage as error:
            log.warning("ignored a malformed bus message: %s", error)
            return
        if envelope.sender == self.config.process_id:
            return
        last = self._last_seq.get(envelope.sender)
        if last is not None and envelope.seq <= last:
            log.debug("dropped duplicate bus message %s/%d", envelope.sender, envelope.seq)
            return
        self._last_seq[envelope.sender] = envelope.seq
        if envelope.event is None:
            await self.resync()
            return
        if last is not None and envelope.seq != last + 1:
            # The snapshot holds every missed change; chat messages are gone, but this one
            # is applied below like any other.
            log.warning("bus messages from %s were missed; resynchronising", envelope.sender)
            await self.resync()
        self.applied += 1
        await self.server.publish(envelope.event, None, relay=False)

    async def resync(self) -> None:
        """Reload the guild list and every loaded guild from the snapshot.

        Like the core's periodic reload, a guild's viewers get a new world only when it
        changed: after a short blip nothing did, and thousands of viewers need no resend.
        """
        self.resyncs += 1
        await self.server.refresh(None)
        for key in list(self.server.directory.guilds):
            await self.server.refresh(key, always=False)
