"""The soak's own Redis: one redis-server, or a master, a replica and three sentinels that
fail over - all on ports the OS picked, killed and restarted by the soak and nobody else."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
from pathlib import Path

from redis.asyncio import Redis

from tests.support.ports import free_port

MASTER_NAME = "soak"


class RedisProcess:
    """One redis-server (or sentinel) on a fixed port, without persistence: a restart loses
    every key, as a crashed Redis without AOF does."""

    def __init__(self, directory: Path, name: str, sentinel: bool = False) -> None:
        self.directory = directory
        self.name = name
        self.sentinel = sentinel
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.replica_of: int | None = None

    def _arguments(self) -> list[str]:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        common = ["--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        common += ["--appendonly", "no", "--dir", str(self.directory)]
        if self.sentinel:
            conf = self.directory / f"{self.name}.conf"
            if not conf.exists():  # a sentinel rewrites its file; keep what it learnt
                conf.write_text(
                    f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.replica_of} 2\n"
                    f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                    f"sentinel failover-timeout {MASTER_NAME} 5000\n"
                    f"sentinel parallel-syncs {MASTER_NAME} 1\n"
                )
            listen = ["--bind", "127.0.0.1", "--port", str(self.port)]
            return [binary, str(conf), "--sentinel", *listen]
        if self.replica_of is not None:
            common += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        return [binary, *common]

    async def start(self) -> None:
        log = (self.directory / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(self._arguments(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        client = Redis(host="127.0.0.1", port=self.port)
        try:
            for _ in range(200):
                with contextlib.suppress(Exception):
                    if await client.ping():
                        return
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        raise RuntimeError(f"{self.name} did not start on port {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None


class RedisTopology:
    """What the dback processes are pointed at: ``env`` are their settings."""

    def __init__(self, directory: Path, sentinels: bool) -> None:
        self.directory = directory
        self.with_sentinels = sentinels
        self.servers = [RedisProcess(directory, "redis0")]
        self.sentinels: list[RedisProcess] = []
        if sentinels:
            replica = RedisProcess(directory, "redis1")
            replica.replica_of = self.servers[0].port
            self.servers.append(replica)
            for index in range(3):
                sentinel = RedisProcess(directory, f"sentinel{index}", sentinel=True)
                sentinel.replica_of = self.servers[0].port
                self.sentinels.append(sentinel)

    async def start(self) -> None:
        for process in [*self.servers, *self.sentinels]:
            await process.start()
        if self.with_sentinels:
            await self._until_replicated()

    def stop(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.kill()

    def env(self, prefix: str) -> dict[str, str]:
        settings = {"DBACK_REDIS_PREFIX": prefix}
        if self.with_sentinels:
            addresses = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
            settings["DBACK_REDIS_SENTINELS"] = addresses
            settings["DBACK_REDIS_SENTINEL_MASTER"] = MASTER_NAME
            # The plain URL stays set: a plugin without sentinel support still runs.
        settings["DBACK_REDIS_URL"] = f"redis://127.0.0.1:{self.servers[0].port}/0"
        return settings

    async def master_port(self) -> int:
        """The port the sentinels name as master (the only server without sentinels)."""
        if not self.with_sentinels:
            return self.servers[0].port
        for sentinel in self.sentinels:
            client = Redis(host="127.0.0.1", port=sentinel.port, decode_responses=True)
            try:
                with contextlib.suppress(Exception):
                    answer = await client.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME
                    )
                    return int(answer[1])
            finally:
                await client.aclose()
        raise RuntimeError("no sentinel answers")

    async def _until_replicated(self, timeout: float = 30.0) -> None:
        replica = Redis(host="127.0.0.1", port=self.servers[1].port, decode_responses=True)
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while (await replica.info("replication")).get("master_link_status") != "up":
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError("the replica did not catch up with the master")
                await asyncio.sleep(0.1)
        finally:
            await replica.aclose()

    async def restart(self, port: int, down_for: float) -> None:
        """SIGKILL the server on ``port``; start it again (empty) after ``down_for``."""
        server = next(s for s in self.servers if s.port == port)
        server.kill()
        await asyncio.sleep(down_for)
        if self.with_sentinels:
            # It comes back as the replica of whoever is master now (sentinels would make it
            # one anyway; saying so at once keeps two masters from ever coexisting).
            master = await self.master_port()
            server.replica_of = None if master == port else master
        await server.start()

    async def failover(self, timeout: float = 30.0) -> float:
        """SIGKILL the master, wait until the sentinels promote the replica, start the old
        master again as a replica. Returns the seconds until a new master was named."""
        old = await self.master_port()
        killed = next(s for s in self.servers if s.port == old)
        killed.kill()
        loop = asyncio.get_running_loop()
        started = loop.time()
        while await self.master_port() == old:
            if loop.time() - started > timeout:
                raise RuntimeError("the sentinels did not fail over")
            await asyncio.sleep(0.1)
        promoted = loop.time() - started
        killed.replica_of = await self.master_port()
        await killed.start()
        return promoted
