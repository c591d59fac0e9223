"""The ``auto`` role: every process can publish, and an election in Redis picks the one that does.

All processes start as edges with the other plugins (the providers) on standby. Each one
tries to take the publisher lease every third of its lifetime; the process that holds it
releases its providers (one Discord gateway session per bot token, whatever the number of
processes), rewrites the snapshot and publishes. When it dies, its lease expires and another
process takes over.

The publisher does not need Redis to know when its lease runs out: it keeps the deadline
itself (the monotonic time it sent the last successful renewal, plus the lease, less a
margin), and a timer fires there. A publisher that was paused (SIGSTOP, a long stall) wakes
up with that deadline behind it, or one cut off from Redis reaches it: the timer silences
its providers and its writer in the same moment - before anything else the wake-up brings
can run - and it steps down without asking Redis: its providers are put back on standby
and it serves from the snapshot like any edge, whatever its old tasks are doing (each stop
is bounded; what does not end is abandoned and logged). It then runs for election again
like every edge.

A handover loses no chat: the publisher records in ``P:positions`` the highest position of
each chat source it published (same MULTI/EXEC as the chat), and the next one hands that to
its providers when it releases them (``release_plugins(resume=...)``), so they deliver what
came after it. Chat it showed while Redis was away and never published is handed on when
it steps down (to its edge's outbox, or back to its next publisher), since its providers
resume after everything shown here. A publisher that stops (SIGTERM) first writes
everything it applied, then gives the lease up and says so on the bus (``released``): the
others run for election at once instead of waiting for their next turn. The fence stays
monotonic when Redis forgets it: the highest this process has seen goes with every attempt
to take the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

from redis.exceptions import RedisError

from dback_core.plugin.backoff import Backoff
from dback_core.plugin.events import Event
from dback_core.plugin.host import PluginHost
from dback_core.plugin.tasks import cancel_within
from dback_redis import chat, codec
from dback_redis.config import EDGE, PUBLISHER, RedisConfig, redacted
from dback_redis.connection import RETRY_FIRST, open_client, published_positions, retry_ceiling
from dback_redis.edge import Edge
from dback_redis.election import Lease
from dback_redis.link import Link
from dback_redis.publisher import Publisher
from dback_redis.snapshot import Keys

log = logging.getLogger(__name__)

#: The part of the lease the publisher gives up before Redis would let it expire: room for
#: the clocks of Redis and this process to drift apart. The deadline counts from the moment
#: the renewal was sent, never later than Redis started its expiry.
EXPIRY_MARGIN = 0.1


class Elected:
    """Runs this process as an edge or as the publisher, as the election decides."""

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.sequence = itertools.count(1)
        self.link = Link(redacted(config.url))
        #: The chat this process has applied, per sender, whatever its role: a process
        #: that steps down replays from the stream what it missed while it led.
        self.replay = chat.Replay(config.process_id, config.chat)
        self.role: Edge | Publisher = self._edge()
        self.host: PluginHost | None = None
        self.redis = open_client(config)
        #: The highest fence this process has seen, its own and on the bus.
        self.highest_fence = 0
        self.lease = self._new_lease()
        #: Times this process took the lease, for tests and diagnostics.
        self.terms = 0
        self._elector: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._switching = asyncio.Lock()
        #: Fires when the lease runs out unrenewed (loop time), while leading.
        self._expiry: asyncio.TimerHandle | None = None
        self._stepping_down: asyncio.Task[None] | None = None
        #: The edge a silenced publisher becomes, serving the world as it was when the
        #: providers went quiet until the step-down completes (see ``_silence``).
        self._next_edge: Edge | None = None

    def _new_lease(self) -> Lease:
        """A lease handle with a lock of its own: one per term, so a task abandoned while
        holding the last term's lock cannot hold up the renewals of the next."""
        config = self.config
        lease = Lease(self.redis, Keys(config.prefix), config.process_id, config.lease_seconds)
        lease.saw(self.highest_fence)
        return lease

    def _edge(self) -> Edge:
        edge = Edge(self.config, self.sequence, self.link)
        edge.on_released = self._nudge
        edge.replay = self.replay
        return edge

    def _edge_keeping_world(self) -> Edge:
        """An edge that serves the world as this process shows it now, each part until it
        can be read from the snapshot (``Edge.keep_serving``)."""
        assert self.host is not None
        edge = self._edge()
        edge.keep_serving(self.host.guild_list(), self.host.loaded_guilds())
        return edge

    def _nudge(self) -> None:
        """The publisher gave the lease up: run for election now."""
        if not self.leading:
            self._lost.set()

    def _saw_fences(self) -> None:
        """Remember the highest fence the current role has seen."""
        self.highest_fence = max(self.highest_fence, self.role.highest_fence)
        self.lease.saw(self.highest_fence)

    @property
    def leading(self) -> bool:
        return isinstance(self.role, Publisher)

    @property
    def current(self) -> str:
        return PUBLISHER if self.leading else EDGE

    async def start(self, host: PluginHost) -> None:
        """Follow the bus as an edge; take the lease at once if nobody holds it, so a single
        process (or the first of several) serves its providers from the start."""
        self.host = host
        await self.role.start(host)
        with contextlib.suppress(RedisError, OSError):
            await self._campaign()
        self._elector = asyncio.create_task(self._elect(), name="dback-redis-election")

    async def stop(self) -> None:
        self._cancel_expiry()
        await cancel_within(
            [task for task in (self._elector, self._stepping_down) if task is not None],
            "redis election",
        )
        leading = self.role if isinstance(self.role, Publisher) else None
        if leading is not None:
            # The providers have stopped: what they delivered is written before the lease
            # goes, so the next publisher resumes right after it.
            await leading.drain(self.config.lease_seconds)
        await self.role.stop()
        if self._next_edge is not None:
            await self._next_edge.stop()  # never started: its client is closed
        if leading is not None:
            # Handing over at once instead of letting the lease expire: a restart of the
            # publisher then costs the others no lease time.
            with contextlib.suppress(RedisError, OSError):
                await self.lease.release()
                notice = codec.encode_released(self.config.process_id, leading.fence)
                await self.redis.publish(self.lease.keys.channel, notice)
        await self.redis.aclose()

    async def _elect(self) -> None:
        """Renew the lease while leading, try to take it while not, every third of its life.

        After Redis failed, the next try comes sooner (a ``Backoff`` from ``RETRY_FIRST`` up
        to that third): a publisher that missed one renewal gets another chance before its
        lease runs out, instead of a third of the lease later. Whatever happens, the loop
        goes on: a process that stepped down runs for election again.
        """
        interval = self.config.lease_seconds / 3
        failures = Backoff(min(RETRY_FIRST, interval), min(interval, retry_ceiling(self.config)))
        wait = interval
        while True:
            # Not ``wait_for``: on Python 3.11 it can swallow the cancellation of ``stop``.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._lost.wait()
            wait = interval
            try:
                if self._lost.is_set() and self.leading:
                    await self._step_down(None)
                elif self.leading:
                    await self._renew()
                else:
                    self._lost.clear()  # a nudge: the publisher released the lease
                    await self._campaign()
                failures.reset()
            except (RedisError, OSError) as error:
                # The lease's own deadline decides when a publisher stops; the link logs
                # the outage once. A retry loop has nothing to add per attempt.
                log.debug("redis: the election failed for now (%s)", error)
                wait = failures.next()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("redis: the publisher election failed; trying again")

    async def _campaign(self) -> None:
        """Take the lease if nobody holds it, and lead."""
        sent = asyncio.get_running_loop().time()
        self._saw_fences()
        fence = await self.lease.acquire()
        if fence is not None:
            self.highest_fence = max(self.highest_fence, fence)
            await self._lead(fence, sent)

    async def _renew(self) -> None:
        """Extend the lease; step down when another process holds it now."""
        term = self.terms
        sent = asyncio.get_running_loop().time()
        renewed = await self.lease.renew()
        if not self.leading or self.terms != term:
            # Stepped down meanwhile (the deadline passed while Redis answered): a lease
            # kept by an edge would leave everyone without a publisher until it expired.
            if renewed and not self.leading:
                await self.lease.release()
            return
        if renewed:
            self._expire_at(sent)
            return
        await self._step_down("the publisher lease passed to another process")

    def _expire_at(self, sent: float) -> None:
        """(Re)start the timer at the lease's end, counted from ``sent`` (loop time)."""
        self._cancel_expiry()
        seconds = self.config.lease_seconds
        deadline = sent + seconds * (1 - EXPIRY_MARGIN)
        self._expiry = asyncio.get_running_loop().call_at(deadline, self._expired, seconds)

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _expired(self, seconds: float) -> None:
        """The lease ran out unrenewed: silent now, stepping down in the background."""
        self._expiry = None
        if not self.leading:
            return
        self._silence(f"the publisher lease ran out unrenewed ({seconds:g}s)")
        if self._stepping_down is None or self._stepping_down.done():
            self._stepping_down = asyncio.create_task(
                self._step_down(None), name="dback-redis-step-down"
            )

    def _silence(self, reason: str) -> None:
        """Stop publishing and drop the providers' events, at once (no await): one WARNING."""
        assert self.host is not None
        if self._lost.is_set() or not self.leading:
            return
        log.warning("redis %s: %s; stepping down", redacted(self.config.url), reason)
        self._lost.set()
        self._cancel_expiry()
        # From this moment the providers answer nothing and the publisher's hooks step
        # aside: a reload before the edge takes over (a Refresh the next publisher puts on
        # the bus, applied by a follower still running) would find no guild at all and
        # take every viewer out of it. The edge-to-be serves the world as it is now.
        self._next_edge = self._edge_keeping_world()
        self.host.silence_plugins()
        if isinstance(self.role, Publisher):
            self.role.silence()

    async def _lead(self, fence: int, sent: float) -> None:
        """Become the publisher: start the providers, publish under ``fence``; the lease,
        taken at ``sent`` (loop time), runs out from there unless renewed."""
        assert self.host is not None
        async with self._switching:
            resume = await published_positions(self.redis, self.lease.keys)
            await self.role.stop()
            unsent = self.role.unsent_chat() if isinstance(self.role, Edge) else []
            self._lost.clear()
            self.terms += 1
            log.info(
                "redis %s: this process is the publisher now (lease %d)",
                redacted(self.config.url),
                fence,
            )
            publisher = Publisher(
                self.config,
                self.sequence,
                self.lease,
                fence,
                on_lease_lost=self._publisher_lost_lease,
                link=self.link,
            )
            publisher.highest_fence = fence
            publisher.replay = self.replay
            # Before anything the providers deliver: chat this process showed while Redis
            # was away - as the publisher it was until then, or as an edge - is published
            # first, since they resume after it (this process's ledger counts it as shown).
            publisher.carry(unsent)
            await self._catch_up(publisher)
            # The data hooks step aside from here on, so the providers' world is loaded;
            # the publisher starts once it is, and its first write is the whole snapshot.
            self.role = publisher
            # Leading from here, so the timer finds it so (at once if the lease ran out
            # already while the edge stopped).
            self._expire_at(sent)
            self.host.keep_loaded(True)
            await self.host.release_plugins(resume)
            if self._lost.is_set():
                self.host.silence_plugins()  # the lease ran out while they started
            await publisher.start(self.host)

    async def _catch_up(self, publisher: Publisher) -> None:
        """Show the chat in the stream this process has not shown yet, before the providers
        start: they resume after the positions published, and chat this process missed as
        an edge (or that an edge put on the bus from its outbox a moment ago) would come
        after theirs - out of order - with the publisher's first resync. Unreachable, that
        resync replays it."""
        assert self.host is not None
        try:
            missed = await self.replay.missed(publisher.redis, publisher.keys)
        except (RedisError, OSError) as error:
            log.debug("redis: could not read the chat history before leading (%s)", error)
            return
        for envelope in missed:
            assert envelope.event is not None  # a replay holds chat only
            await self.host.publish(envelope.event, relay=False)

    def _publisher_lost_lease(self) -> None:
        """The writer found the lease another's: silent now, the elector steps down."""
        self._silence("the publisher lease passed to another process")

    async def _step_down(self, reason: str | None) -> None:
        """Stop publishing at once, put the providers back on standby, serve as an edge;
        ``reason`` is logged unless the step-down was announced already."""
        if reason is not None:
            self._silence(reason)
        await self._follow()

    async def _follow(self) -> None:
        """Serve as an edge: every stop on the way is bounded (see ``cancel_within``)."""
        assert self.host is not None
        async with self._switching:
            if not self.leading:
                self._lost.clear()
                return
            self._silence("no longer the publisher")
            self._cancel_expiry()
            self._saw_fences()
            leading = self.role
            with contextlib.suppress(RedisError, OSError):
                await self.role.stop()  # closing its client may fail: it is an edge all the same
            self.lease = self._new_lease()
            self.host.keep_loaded(False)
            # Made by ``_silence``, serving the world as it was (Redis may be out of reach:
            # that may be why).
            edge = self._next_edge or self._edge_keeping_world()
            edge.highest_fence = self.highest_fence
            # The chat it showed but could not publish (Redis away until the lease ran out)
            # goes on the bus once Redis answers: whoever publishes next resumes after it
            # when it is this process, or when ``P:positions`` records it first.
            if isinstance(leading, Publisher):
                edge.carry(leading.undelivered())
            self.role = edge
            self._next_edge = None
            log.info("redis %s: this process is an edge now", redacted(self.config.url))
            try:
                await self.host.hold_plugins()
            finally:
                await self.role.start(self.host)
                self._lost.clear()

    # -- what the plugin's hooks ask ---------------------------------------------------------

    def applied_here(self, event: Event, origin: str | None) -> None:
        if isinstance(self.role, Publisher):
            self.role.applied_here(event)
        else:
            self.role.applied_here(event, origin)

    @property
    def _serving(self) -> Edge | None:
        """What answers the data hooks: the edge, the edge-to-be of a publisher stepping
        down, or nobody (a publisher: its providers answer)."""
        return self.role if isinstance(self.role, Edge) else self._next_edge

    async def servers(self) -> dict[str, dict[str, Any]] | None:
        serving = self._serving
        return None if serving is None else await serving.servers()

    async def users(self, server_id: str) -> dict[str, dict[str, Any]] | None:
        serving = self._serving
        return None if serving is None else await serving.users(server_id)

    async def client_id(self, server_id: str) -> str | None:
        serving = self._serving
        return None if serving is None else await serving.client_id(server_id)

    async def wait_for_snapshot(self, seconds: float) -> None:
        """Until the publisher's first snapshot is in Redis, at most ``seconds``.

        ``startup`` of a process that lost the first election waits here: processes started
        together (``--workers``) would otherwise listen with an empty world while the elected
        one loads its providers. A publisher has nothing to wait for; a process that cannot
        reach Redis starts without a snapshot, as it always did.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        keys = Keys(self.config.prefix)
        with contextlib.suppress(RedisError, OSError):
            while not self.leading and not await self.redis.exists(keys.servers):
                if loop.time() >= deadline:
                    log.info("redis: no snapshot yet; starting without one until it is written")
                    return
                await asyncio.sleep(0.05)
