"""A Redis master, its replica and three sentinels of one test's own, on ports the OS picks
(imported by name by the sentinel tests and the failover bench).

Every server is a real ``redis-server`` (``--sentinel`` for the sentinels) without
persistence, in a temporary directory; killing one hurts nobody else. ``kill_master``
SIGKILLs whichever server the sentinels name as the master; ``restart`` brings a killed
one back on its port, where the sentinels make it a replica of the new master.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

MASTER_NAME = "mymaster"
WAIT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server() -> str:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (scripts/test-machine installs it)"
    return binary


async def until(condition, what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` (sync or async) until true; ``TimeoutError(what)`` after
    ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        with contextlib.suppress(RedisError, OSError):
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
        if loop.time() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


class Server:
    """One ``redis-server`` process on a fixed port, which can be killed and restarted."""

    def __init__(self, name: str, directory: Path, arguments: list[str], port: int) -> None:
        self.name = name
        self.directory = directory
        self.arguments = arguments
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        log = (self.directory / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            [redis_server(), *self.arguments, *extra], cwd=self.directory, stdout=log, stderr=log
        )
        log.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    #: The password clients give (a sentinel's ``requirepass``), if any.
    password: str | None = None

    def client(self) -> Redis:
        return Redis(
            host="127.0.0.1", port=self.port, password=self.password, decode_responses=True
        )

    async def answers(self) -> bool:
        client = self.client()
        try:
            return bool(await client.ping())
        finally:
            await client.aclose()


class SentinelCluster:
    """A master, a replica and three sentinels watching them as ``mymaster``."""

    def __init__(
        self,
        directory: Path,
        down_after_ms: int = 1000,
        sentinels: int = 3,
        sentinel_password: str | None = None,
    ) -> None:
        self.directory = directory
        self.down_after_ms = down_after_ms
        self.sentinel_password = sentinel_password
        directory.mkdir(parents=True, exist_ok=True)
        self.data = [self._data_server(f"redis{index}") for index in range(2)]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinels: list[Server] = []

    def _data_server(self, name: str) -> Server:
        port = free_port()
        arguments = ["--bind", "127.0.0.1", "--port", str(port), "--save", ""]
        arguments += ["--appendonly", "no", "--dir", str(self.directory)]
        return Server(name, self.directory, arguments, port)

    @property
    def addresses(self) -> str:
        """``DBACK_REDIS_SENTINELS`` for this cluster."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    async def start(self) -> None:
        """The master, the replica in sync with it, and the sentinels, all answering."""
        master, replica = self.data
        master.start()
        await until(master.answers, "the master did not start")
        replica.start("--replicaof", "127.0.0.1", str(master.port))
        await until(lambda: self.in_sync(master), "the replica did not sync")
        self.start_sentinels()
        await until(self.all_watching, "the sentinels did not see each other and the replica")

    def start_sentinels(self) -> None:
        master = self.data[0]
        for index, port in enumerate(self.sentinel_ports):
            config = self.directory / f"sentinel{index}.conf"
            if not config.exists():  # a sentinel rewrites its file: a restart keeps it
                config.write_text(
                    f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                    f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} 2\n"
                    f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}\n"
                    f"sentinel failover-timeout {MASTER_NAME} {max(3 * self.down_after_ms, 3000)}\n"
                    f"sentinel parallel-syncs {MASTER_NAME} 1\n"
                )
                if self.sentinel_password is not None:
                    # Also what the sentinels give each other.
                    with config.open("a") as lines:
                        lines.write(f'requirepass "{self.sentinel_password}"\n')
            server = Server(f"sentinel{index}", self.directory, [str(config), "--sentinel"], port)
            server.password = self.sentinel_password
            server.start()
            self.sentinels.append(server)

    def kill_sentinels(self) -> None:
        for server in self.sentinels:
            server.kill()
        self.sentinels = []

    async def master_port(self) -> int | None:
        """The master's port as a majority of the running sentinels name it, or None."""
        named: dict[int, int] = {}
        for server in self.sentinels:
            client = server.client()
            try:
                address = await client.execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME
                )
                if address:
                    named[int(address[1])] = named.get(int(address[1]), 0) + 1
            except (RedisError, OSError):
                continue
            finally:
                await client.aclose()
        for port, votes in named.items():
            if votes * 2 > len(self.sentinel_ports):
                return port
        return None

    def server_on(self, port: int) -> Server:
        return next(server for server in self.data if server.port == port)

    async def in_sync(self, master: Server) -> bool:
        """Whether every other running data server replicates ``master`` with its link up."""
        client = master.client()
        try:
            info = await client.info("replication")
        finally:
            await client.aclose()
        others = sum(1 for s in self.data if s is not master and s.process is not None)
        online = sum(
            1 for key, value in info.items() if key.startswith("slave") and "online" in str(value)
        )
        return info.get("role") == "master" and online >= others

    async def all_watching(self) -> bool:
        """Every sentinel knows the others, names the master and sees each running replica
        up, and the replicas are in sync."""
        port = await self.master_port()
        if port is None:
            return False
        for server in self.sentinels:
            client = server.client()
            try:
                (state,) = [
                    s
                    for s in await client.execute_command("SENTINEL", "MASTERS")
                    if _pairs(s)["name"] == MASTER_NAME
                ]
                replicas = await client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
            finally:
                await client.aclose()
            fields = _pairs(state)
            running = sum(1 for s in self.data if s.process is not None)
            if int(fields["num-other-sentinels"]) < len(self.sentinel_ports) - 1:
                return False
            if fields["flags"] != "master":
                return False
            # Up as the sentinels see them (no s_down): eligible for the next failover.
            if sum(_pairs(r)["flags"] == "slave" for r in replicas) < running - 1:
                return False
        return await self.in_sync(self.server_on(port))

    async def kill_master(self) -> int:
        """SIGKILL the current master; its port."""
        port = await self.master_port()
        assert port is not None, "the sentinels name no master"
        self.server_on(port).kill()
        return port

    async def failed_over(self, old_port: int) -> int:
        """Wait until the sentinels name another master than ``old_port``, and it answers."""
        found: list[int] = []

        async def moved() -> bool:
            port = await self.master_port()
            if port is None or port == old_port or not await self.server_on(port).answers():
                return False
            found.append(port)
            return True

        await until(moved, "the sentinels did not fail over")
        return found[-1]

    async def restart(self, port: int, master_port: int) -> None:
        """Start the killed server on ``port`` again as a replica of ``master_port`` (as an
        operator would) and wait until it is in sync and the sentinels count on it: the
        next failover needs it."""
        self.server_on(port).start("--replicaof", "127.0.0.1", str(master_port))
        await until(self.all_watching, "the restarted server did not become a replica")

    def stop(self) -> None:
        self.kill_sentinels()
        for server in self.data:
            server.kill()


def _pairs(flat: object) -> dict[str, str]:
    """A sentinel's flat ``[name, value, ...]`` reply (or an already parsed dict)."""
    if isinstance(flat, dict):
        return {str(k): str(v) for k, v in flat.items()}
    assert isinstance(flat, list)
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}
