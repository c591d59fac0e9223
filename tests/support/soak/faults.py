"""Faults, one at a time at random moments, each followed by waiting for the deployment to
be ready again: what was injected, when, and how long recovery took."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from tests.support.postgres_passwords import ADMIN_DSN
from tests.support.soak.cluster import Cluster, DbackNode
from tests.support.soak.viewers import Viewer


@dataclass(frozen=True)
class Fault:
    kind: str
    at: float
    detail: str
    recovered_after: float | None  # None: the deployment was not ready again in time


class FaultInjector:
    def __init__(
        self,
        cluster: Cluster,
        viewers: list[Viewer],
        kinds: tuple[str, ...],
        gap: tuple[float, float],
        spared_backends: Callable[[], list[int]],
        rng: random.Random,
    ) -> None:
        self.cluster = cluster
        self.viewers = viewers
        self.kinds = kinds
        self.gap = gap
        self.spared_backends = spared_backends
        self.rng = rng
        self.injected: list[Fault] = []

    async def run(self, until: float) -> None:
        """Inject faults until the monotonic time ``until`` (none starts after it)."""
        if not self.kinds:
            return
        while True:
            await asyncio.sleep(self.rng.uniform(*self.gap))
            if time.monotonic() >= until:
                return
            await self.inject(self.rng.choice(self.kinds))

    async def inject(self, kind: str) -> Fault:
        at = time.monotonic()
        detail = await getattr(self, f"_{kind}")()
        try:
            recovered: float | None = await self.cluster.until_ready(timeout=60)
        except (TimeoutError, RuntimeError) as problem:
            recovered, detail = None, f"{detail}; not ready: {problem}"
            await self._restart_dead()
        fault = Fault(kind, at, detail, recovered)
        self.injected.append(fault)
        return fault

    async def _restart_dead(self) -> None:
        for node in self.cluster.nodes:
            if node.process is None or node.process.poll() is not None:
                node.start()

    async def _pg_terminate(self) -> str:
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> ALL($2::int[]) AND pid <> pg_backend_pid()",
                self.cluster.database.name,
                self.spared_backends(),
            )
        finally:
            await admin.close()
        return f"{ended} backends"

    async def _redis_restart(self) -> str:
        topology = self.cluster.redis
        if topology.with_sentinels:  # the replica: the master's loss is a failover
            master = await topology.master_port()
            port = next(s.port for s in topology.servers if s.port != master)
        else:
            port = topology.servers[0].port
        await topology.restart(port, down_for=self.rng.uniform(0.5, 3.0))
        return f"port {port}"

    async def _sentinel_failover(self) -> str:
        if not self.cluster.redis.with_sentinels:
            return await self._redis_restart() + " (no sentinels: a restart instead)"
        promoted = await self.cluster.redis.failover()
        return f"new master named after {promoted:.1f} s"

    async def _publisher(self) -> tuple[DbackNode, int] | None:
        for _ in range(50):
            found = await self.cluster.publisher()
            if found is not None:
                return found
            await asyncio.sleep(0.2)
        return None

    async def _publisher_signal(self, signum: int) -> str:
        found = await self._publisher()
        if found is None:
            return "skipped: nobody holds the lease"
        node, pid = found
        if pid != node.pid:  # a worker: its parent starts another
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
            await asyncio.sleep(1.0)
            return f"{node.name} worker pid {pid}"
        node.signal(signum)
        if await node.wait_exit(20) is None:
            node.signal(signal.SIGKILL)
            await node.wait_exit(10)
        await asyncio.sleep(self.rng.uniform(0.0, 2.0))
        node.start()
        return node.name

    async def _publisher_sigterm(self) -> str:
        return await self._publisher_signal(signal.SIGTERM)

    async def _publisher_sigkill(self) -> str:
        return await self._publisher_signal(signal.SIGKILL)

    async def _publisher_sigstop(self) -> str:
        found = await self._publisher()
        if found is None:
            return "skipped: nobody holds the lease"
        node, pid = found
        paused = self.cluster.config.lease_seconds * self.rng.uniform(1.5, 3.0)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
            await asyncio.sleep(paused)
            os.kill(pid, signal.SIGCONT)
        where = node.name if pid == node.pid else f"{node.name} worker pid {pid}"
        return f"{where} for {paused:.1f} s"

    def _worker(self) -> tuple[DbackNode, int] | None:
        for node in self.cluster.nodes:
            pids = node.worker_pids() if node.workers else []
            if pids:
                return node, self.rng.choice(pids)
        return None

    async def _worker_sigkill(self) -> str:
        found = self._worker()
        if found is None:
            return "skipped: no workers"
        with contextlib.suppress(ProcessLookupError):
            os.kill(found[1], signal.SIGKILL)
        await asyncio.sleep(1.0)
        return f"{found[0].name} pid {found[1]}"

    async def _worker_sigstop(self) -> str:
        found = self._worker()
        if found is None:
            return "skipped: no workers"
        paused = self.rng.uniform(3.0, 8.0)
        with contextlib.suppress(ProcessLookupError):
            os.kill(found[1], signal.SIGSTOP)
        await asyncio.sleep(paused)
        with contextlib.suppress(ProcessLookupError):
            os.kill(found[1], signal.SIGCONT)
        return f"{found[0].name} pid {found[1]} for {paused:.1f} s"

    async def _viewer_churn(self) -> str:
        chosen = self.rng.sample(self.viewers, max(1, len(self.viewers) // 3))
        for viewer in chosen:
            viewer.drop()
        return f"{len(chosen)} viewers dropped at once"
