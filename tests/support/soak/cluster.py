"""The deployment under test: a PostgreSQL database of the soak's own (created, migrated,
seeded, dropped), its Redis, and several ``dback serve`` processes in the ``auto`` role
with dback-postgres as the provider - one of them, optionally, with ``--workers``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.support.ports import free_port
from tests.support.postgres_database import dsn_for, guild_database, guild_members
from tests.support.soak.config import SoakConfig
from tests.support.soak.publisher import publisher_pid
from tests.support.soak.redis_servers import RedisTopology

GUILD = "424242424242424242"


class Database:
    """A database only this run uses (``guild_database``), with ``members`` members named
    ``m<i> v0`` (the writer's version 0); dropped with every connection still open to it."""

    def __init__(self) -> None:
        self.name = ""
        self.dsn = ""
        self._dropped = contextlib.AsyncExitStack()

    async def create(self, members: int) -> None:
        created = guild_database("dback_soak", GUILD, "Soak", members, username="m{} v0")
        self.name = await self._dropped.enter_async_context(created)
        self.dsn = dsn_for(self.name)

    async def drop(self) -> None:
        await self._dropped.aclose()

    async def world(self) -> dict[str, tuple[str, str]]:
        """uid -> (status, username) as PostgreSQL has it now."""
        return await guild_members(self.dsn, GUILD)


class DbackNode:
    """One ``dback serve`` on a fixed port (so viewers find it again after a restart)."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path, workers: int = 0) -> None:
        self.name = name
        self.env = env
        self.workers = workers
        self.port = free_port()
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        #: Every pid this node ran as, in order (a restart adds one).
        self.pids: list[int] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "dback_core", "serve", "--port", str(self.port)]
        if self.workers:
            command += ["--workers", str(self.workers)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.pids.append(self.process.pid)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """The children of a ``--workers`` parent (its workers)."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        with contextlib.suppress(OSError):
            return [int(pid) for pid in path.read_text().split()]
        return []

    def all_pids(self) -> list[int]:
        return [self.pid, *self.worker_pids()] if self.process else []

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    async def wait_exit(self, timeout: float) -> int | None:
        assert self.process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.process.poll() is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return self.process.poll()

    async def get(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        """Status and JSON body of ``GET path`` on this node."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port), timeout
        )
        try:
            request = f"GET {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n"
            writer.write(request.encode())
            raw = await asyncio.wait_for(reader.read(), timeout)
        finally:
            writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, json.loads(body) if body.strip() else None

    async def ready(self) -> bool:
        with contextlib.suppress(Exception):
            status, _ = await self.get("/readyz")
            return status == 200
        return False

    async def redis_role(self) -> str:
        """``publisher``, ``edge`` or what else /api/plugins says of dback-redis."""
        _, described = await self.get("/api/plugins")
        entry = next(e for e in described["plugins"] if e["name"] == "dback-redis")
        detail = str(entry.get("detail", ""))
        for role in ("publisher", "edge"):
            if f"({role})" in detail:
                return role
        return detail or str(entry.get("status"))

    def stop(self) -> None:
        if self.process is None:
            return
        for pid in self.worker_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            for pid in self.worker_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.kill()
            self.process.wait()


class Cluster:
    """Database, Redis and nodes: started together, each torn down whatever happened."""

    def __init__(self, config: SoakConfig, directory: Path) -> None:
        self.config = config
        self.directory = directory
        self.database = Database()
        self.redis = RedisTopology(directory, config.sentinels)
        self.prefix = f"soak{uuid.uuid4().hex[:8]}"
        self.nodes: list[DbackNode] = []

    def _node_env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DBACK_")}
        return {
            **inherited,
            "DBACK_PLUGINS": "dback-redis,dback-postgres",
            "DBACK_POSTGRES_DSN": self.database.dsn,
            "DBACK_POSTGRES_RETRY_MAX": "0.5",
            "DBACK_REDIS_LEASE_SECONDS": str(self.config.lease_seconds),
            "DBACK_MAX_CONNECTIONS_PER_ADDRESS": "5000",
            "DBACK_LOG_LEVEL": "INFO",
            **self.redis.env(self.prefix),
            **self.config.node_env,
        }

    async def __aenter__(self) -> Cluster:
        try:
            await self.database.create(self.config.members)
            await self.redis.start()
            env = self._node_env()
            for index in range(self.config.nodes):
                self.nodes.append(DbackNode(f"node{index}", env, self.directory))
            if self.config.workers:
                name = f"workers{self.config.workers}"
                self.nodes.append(DbackNode(name, env, self.directory, self.config.workers))
            for node in self.nodes:
                node.start()
                await self.until_ready([node])  # the first node started wins the lease
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for node in self.nodes:
            node.stop()
        self.redis.stop()
        await self.database.drop()

    async def until_ready(
        self, nodes: list[DbackNode] | None = None, timeout: float = 60.0
    ) -> float:
        """Seconds until every node answers /readyz with 200."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        for node in nodes if nodes is not None else self.nodes:
            while not await node.ready():
                if node.process is not None and node.process.poll() is not None:
                    raise RuntimeError(f"{node.name} exited; see {node.log_path}")
                if loop.time() - started > timeout:
                    raise TimeoutError(f"{node.name} not ready after {timeout} s")
                await asyncio.sleep(0.2)
        return loop.time() - started

    async def publisher(self) -> tuple[DbackNode, int] | None:
        """The node and the pid (the node's own, or one of its workers') holding the lease."""
        owners = {pid: node for node in self.nodes for pid in node.all_pids()}
        with contextlib.suppress(Exception):
            master = await self.redis.master_port()
            pid = await publisher_pid(master, self.prefix, list(owners))
            if pid is not None:
                return owners[pid], pid
        return None
