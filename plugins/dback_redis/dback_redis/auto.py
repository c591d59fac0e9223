"""The ``auto`` role: every process can publish, and an election in Redis picks the one that does.

All processes start as edges with the other plugins (the providers) on standby. Each one
tries to take the publisher lease every third of its lifetime; the process that holds it
releases its providers (one Discord gateway session per bot token, whatever the number of
processes), rewrites the snapshot and publishes. When it dies, its lease expires and another
process takes over; when it finds its lease gone (it was paused, or cut off from Redis for
longer than the lease), it stops publishing at once, puts its providers back on standby and
serves from the snapshot again like any edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Any

from redis.exceptions import RedisError

from dback_core.plugin.backoff import Backoff
from dback_core.plugin.events import Event
from dback_core.plugin.host import PluginHost
from dback_redis.config import EDGE, PUBLISHER, RedisConfig, redacted
from dback_redis.connection import RETRY_FIRST, open_client, retry_ceiling
from dback_redis.edge import Edge
from dback_redis.election import Lease
from dback_redis.link import Link
from dback_redis.publisher import Publisher
from dback_redis.snapshot import Keys

log = logging.getLogger(__name__)


class Elected:
    """Runs this process as an edge or as the publisher, as the election decides."""

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.sequence = itertools.count(1)
        self.link = Link(redacted(config.url))
        self.role: Edge | Publisher = Edge(config, self.sequence, self.link)
        self.host: PluginHost | None = None
        self.redis = open_client(config)
        self.lease = Lease(self.redis, Keys(config.prefix), config.process_id, config.lease_seconds)
        #: Times this process took the lease, for tests and diagnostics.
        self.terms = 0
        self._elector: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._switching = asyncio.Lock()

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
            fence = await self.lease.acquire()
            if fence is not None:
                await self._lead(fence)
        self._elector = asyncio.create_task(self._elect(), name="dback-redis-election")

    async def stop(self) -> None:
        if self._elector is not None:
            self._elector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._elector
        await self.role.stop()
        if self.leading:
            # Handing over at once instead of letting the lease expire: a restart of the
            # publisher then costs the others no lease time.
            with contextlib.suppress(RedisError, OSError):
                await self.lease.release()
        await self.redis.aclose()

    async def _elect(self) -> None:
        """Renew the lease while leading, try to take it while not, every third of its life.

        After Redis failed, the next try comes sooner (a ``Backoff`` from ``RETRY_FIRST`` up
        to that third): a publisher that missed one renewal gets another chance before its
        lease runs out, instead of a third of the lease later.
        """
        interval = self.config.lease_seconds / 3
        failures = Backoff(min(RETRY_FIRST, interval), min(interval, retry_ceiling(self.config)))
        wait = interval
        renewed_at = time.monotonic()
        while True:
            # Not ``wait_for``: on Python 3.11 it can swallow the cancellation of ``stop``.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._lost.wait()
            wait = interval
            try:
                if self.leading and not self._lost.is_set():
                    if await self.lease.renew():
                        renewed_at = time.monotonic()
                        failures.reset()
                        continue
                    log.warning("redis: the publisher lease passed to another process")
                    await self._follow()
                elif self.leading:
                    await self._follow()
                else:
                    fence = await self.lease.acquire()
                    if fence is not None:
                        await self._lead(fence)
                        renewed_at = time.monotonic()
                failures.reset()
            except (RedisError, OSError) as error:
                wait = failures.next()
                if self.leading and time.monotonic() - renewed_at > self.config.lease_seconds:
                    # Unrenewed past its expiry, the lease may be another's by now.
                    log.warning("redis: could not renew the publisher lease (%s)", error)
                    await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("redis: the publisher election failed; trying again")

    async def _lead(self, fence: int) -> None:
        """Become the publisher: start the providers, publish under ``fence``."""
        assert self.host is not None
        async with self._switching:
            await self.role.stop()
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
                on_lease_lost=self._lost.set,
                link=self.link,
            )
            # The data hooks step aside from here on, so the providers' world is loaded;
            # the publisher starts once it is, and its first write is the whole snapshot.
            self.role = publisher
            self.host.keep_loaded(True)
            await self.host.release_plugins()
            await publisher.start(self.host)

    async def _follow(self) -> None:
        """Stop publishing at once, put the providers back on standby, serve as an edge."""
        assert self.host is not None
        async with self._switching:
            if not self.leading:
                return
            await self.role.stop()
            log.info("redis %s: this process is an edge now", redacted(self.config.url))
            self.host.keep_loaded(False)
            self.role = Edge(self.config, self.sequence, self.link)
            await self.host.hold_plugins()
            await self.role.start(self.host)
            self._lost.clear()

    # -- what the plugin's hooks ask ---------------------------------------------------------

    def applied_here(self, event: Event, origin: str | None) -> None:
        if isinstance(self.role, Publisher):
            self.role.applied_here(event)
        else:
            self.role.applied_here(event, origin)

    async def servers(self) -> dict[str, dict[str, Any]] | None:
        return None if isinstance(self.role, Publisher) else await self.role.servers()

    async def users(self, server_id: str) -> dict[str, dict[str, Any]] | None:
        return None if isinstance(self.role, Publisher) else await self.role.users(server_id)

    async def client_id(self, server_id: str) -> str | None:
        return None if isinstance(self.role, Publisher) else await self.role.client_id(server_id)

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
