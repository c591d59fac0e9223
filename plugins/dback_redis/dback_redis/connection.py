"""The Redis client both roles use, and what they share: following the channel, applying
other processes' events once each, replaying missed chat, and publishing their own."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from dback_core.plugin.backoff import Backoff
from dback_core.plugin.events import Event, Message, Presence
from dback_core.plugin.host import PluginHost
from dback_core.plugin.tasks import cancel_within
from dback_redis import chat, codec, sentinel, snapshot
from dback_redis.config import RedisConfig, client_url, redacted
from dback_redis.link import Link, unreachable

log = logging.getLogger(__name__)

#: Seconds before the first new attempt after Redis failed, and the most the doubling delay
#: grows to: every Redis loop (follower, publisher writer, edge outbox) backs off like this.
RETRY_FIRST = 0.1
RETRY_MAX = 5.0

#: Seconds to connect or to wait for an answer. Short, so that a lost Redis makes a data hook
#: fail quickly (the core then keeps what it has) instead of hanging for the hook timeout.
SOCKET_TIMEOUT = 3.0

#: Record a chat source's position in ``P:positions`` if it is higher than the one there.
_RECORD_POSITION = """
local known = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > known then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 0
"""


def open_client(config: RedisConfig) -> Redis:
    """A client whose connections carry ``config.client_name`` (see CLIENT LIST); the
    password is passed apart from the URL (see ``client_url``). With sentinels, a client of
    whichever server they name as the master (``sentinel.master_client``)."""
    url, password = client_url(config.url)
    options: dict[str, Any] = {
        "decode_responses": True,
        "client_name": config.client_name,
        "socket_connect_timeout": SOCKET_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
        "health_check_interval": 10,
    }
    if config.sentinels is not None:
        return sentinel.master_client(config.sentinels, url, password, **options)
    return Redis.from_url(url, password=password, **options)


async def published_positions(redis: Redis, keys: snapshot.Keys) -> dict[str, int]:
    """Where the last publisher's chat ended, per source (``P:positions``): what a process
    that starts the providers hands them (``host.resume_chat``). Empty when Redis forgot it
    or cannot be reached: the positions shown here then tell."""
    try:
        raw = await redis.hgetall(keys.positions)
    except (RedisError, OSError) as error:
        log.warning("redis: could not read where chat was published up to (%s)", error)
        return {}
    positions = {}
    for source, position in raw.items():
        with contextlib.suppress(ValueError):
            positions[str(source)] = int(position)
    return positions


def retry_ceiling(config: RedisConfig | None = None) -> float:
    """The longest delay between two attempts of a loop that retries Redis: shorter behind
    sentinels, where a failover ends within seconds and each retry may find the new master."""
    if config is not None and config.sentinels is not None:
        return sentinel.RETRY_MAX
    return RETRY_MAX


def retry_backoff(config: RedisConfig | None = None) -> Backoff:
    """The delays of a loop that retries Redis."""
    return Backoff(RETRY_FIRST, retry_ceiling(config))


def _honour_cancellation() -> None:
    """End the current task if it was asked to stop. redis-py can drop that request: it
    sends commands under ``asyncio.wait_for``, which on Python 3.11 loses a cancellation
    that arrives as the send completes (seen once per few starts behind Sentinel). The
    subscription loop would then go on reading, and a change of role wait for it forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def complete(host: PluginHost, event: Event) -> Event:
    """A presence with the member's full record as this process holds it, so processes that
    do not know the member yet (or load it later) can apply it."""
    if not isinstance(event, Presence) or event.delete:
        return event
    guild = host.guild(event.server_id)
    user = guild.members.get(event.uid) if guild is not None else None
    if user is None:
        return event
    return Presence(event.server_id, event.uid, user["status"], user["username"], user["roleColor"])


class Role:
    """A process's part on the bus: its settings, key names, one client, the tasks that run
    from ``startup`` to ``shutdown``, and the subscription every process keeps."""

    #: Whether this process's bus messages are marked as an edge's.
    is_edge = False
    #: The lease number an elected publisher puts on its messages (None: not elected).
    fence: int | None = None

    def __init__(
        self,
        config: RedisConfig,
        sequence: Iterator[int] | None = None,
        link: Link | None = None,
    ) -> None:
        self.config = config
        self.keys = snapshot.Keys(config.prefix)
        self.redis = open_client(config)
        self.host: PluginHost | None = None
        #: This process's message numbers; shared by the roles a process takes in turn, so
        #: its numbering never restarts (receivers would take new messages for duplicates).
        self.sequence = sequence if sequence is not None else itertools.count(1)
        self.seq = 0
        #: The highest publisher lease number seen; older publishers are ignored.
        self.highest_fence = 0
        #: Remote events applied and resyncs done, for tests and diagnostics.
        self.applied = 0
        self.resyncs = 0
        self.replay = chat.Replay(config.process_id, config.chat)
        #: Whether Redis answers this process's subscription (logged, reported as health);
        #: shared like ``sequence``, so an outage that outlasts a change of role is one.
        self.link = link if link is not None else Link(redacted(config.url))
        #: Set once the first attempt to subscribe has succeeded or failed.
        self.attempted = asyncio.Event()
        #: Told when another process gave the publisher lease up (``released``).
        self.on_released: Callable[[], None] = lambda: None
        self._last_seq: dict[str, int] = {}
        #: Senders heard from since the subscription was last (re)established: a gap in
        #: the first message of each is expected (the resync caught up) and logged quietly.
        self._heard_since_subscribed: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, host: PluginHost) -> None:
        """Take this role in ``host``'s server: every role starts the same way, awaited."""
        raise NotImplementedError

    def _spawn(self, coroutine: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coroutine, name=name))

    async def stop(self) -> None:
        """Cancel this role's tasks; one that does not end within a second (caught in the
        client's cleanup) is abandoned and logged, never awaited for ever."""
        tasks, self._tasks = self._tasks, []
        await cancel_within(tasks, f"redis {type(self).__name__.lower()}")
        await self.redis.aclose()

    # -- publishing ------------------------------------------------------------------------

    def publish(self, pipe: Any, event: Event | None, sent_at: float | None = None) -> None:
        """Queue the bus message for ``event`` (None: ``resync``) on ``pipe``; chat also goes
        into the replay stream, in the same transaction."""
        self.seq = next(self.sequence)
        raw = codec.encode(
            event, self.config.process_id, self.seq, from_edge=self.is_edge, fence=self.fence
        )
        if isinstance(event, Message):
            chat.append(pipe, self.keys, self.config.chat, raw, sent_at or time.time())
            if event.source is not None and event.position is not None:
                # Where the next publisher's providers resume (``P:positions``).
                pipe.eval(_RECORD_POSITION, 1, self.keys.positions, event.source, event.position)
        pipe.publish(self.keys.channel, raw)

    # -- following -------------------------------------------------------------------------

    async def follow(self) -> None:
        """Keep a subscription open for as long as the server runs; ``attempted`` is set
        once the first attempt succeeded or failed."""
        backoff = retry_backoff(self.config)
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.keys.channel)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        _honour_cancellation()
                        continue
                    backoff.reset()
                    if message["type"] == "subscribe":
                        self._heard_since_subscribed.clear()
                        self.link.up()
                        self.attempted.set()
                        await self.subscribed()
                    elif message["type"] == "message":
                        await self.receive(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                self.link.failed(error)
            except Exception:
                # A bug must not end the subscription for good: log it and start over,
                # which resynchronises.
                log.exception("redis subscription failed; retrying")
            finally:
                self.attempted.set()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await backoff.sleep()

    def attach(self, host: PluginHost) -> None:
        """Serve ``host`` from now on (called first by the roles' ``start``)."""
        self.host = host
        self.link.host = host

    async def subscribed(self) -> None:
        """The subscription is (re)established: whatever went by meanwhile is caught up."""
        await self.resync()

    async def receive(self, raw: str) -> None:
        """Apply one bus message from another process, once, in its sender's order."""
        try:
            envelope = codec.decode(raw)
        except codec.BadMessage as error:
            log.warning("ignored a malformed bus message: %s", error)
            return
        if envelope.sender == self.config.process_id:
            return
        if envelope.released:
            self.on_released()
            return
        if envelope.fence is not None:
            if envelope.fence < self.highest_fence:
                log.debug("ignored a message of a former publisher %s", envelope.sender)
                return
            self.highest_fence = envelope.fence
        last = self._last_seq.get(envelope.sender)
        if last is not None and envelope.seq <= last:
            log.debug("dropped duplicate bus message %s/%d", envelope.sender, envelope.seq)
            return
        self._last_seq[envelope.sender] = envelope.seq
        if envelope.event is None:
            await self.resync()
            return
        first_heard = envelope.sender not in self._heard_since_subscribed
        self._heard_since_subscribed.add(envelope.sender)
        if last is not None and envelope.seq != last + 1:
            # Missed presences are in the snapshot and missed chat in the stream; this
            # message is applied below, after them, like any other. Right after a new
            # subscription the gap is the outage's, already told.
            log.log(
                logging.INFO if first_heard else logging.WARNING,
                "bus messages from %s were missed; resynchronising",
                envelope.sender,
            )
            await self.resync()
        if isinstance(envelope.event, Message) and not self.replay.saw(
            envelope.sender, envelope.seq
        ):
            return
        await self.apply(envelope)

    async def apply(self, envelope: codec.Envelope) -> None:
        """Apply another process's event here; ``relay=False`` keeps it off the bus."""
        assert self.host is not None and envelope.event is not None
        self.applied += 1
        await self.host.publish(envelope.event, relay=False)

    async def resync(self) -> None:
        """Catch up after messages may have been missed: replay the chat not seen yet."""
        self.resyncs += 1
        try:
            missed = await self.replay.missed(self.redis, self.keys)
        except (RedisError, OSError) as error:
            # Out of reach, the subscription fails too: its next resync replays this.
            level = logging.DEBUG if unreachable(error) else logging.WARNING
            log.log(level, "redis: could not read the chat history (%s)", error)
            return
        if missed:
            log.info("replaying %d chat messages missed while disconnected", len(missed))
        if self.host is not None:
            self.host.chat_lost(self.replay.take_too_old(), "older than the replay window")
        for envelope in missed:
            await self.apply(envelope)
