"""Helpers shared by the PostgreSQL plugin's tests (imported by name: this directory is on
sys.path while its tests run)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from dback_core.serving.server import DbackServer
from dback_core.testing import Client, Served, running_server

ADMIN_DSN = os.environ.get(
    "DBACK_POSTGRES_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def dsn_for(database: str, port: int | None = None) -> str:
    """The admin DSN pointed at another database (and optionally another port)."""
    parts = urlsplit(ADMIN_DSN)
    netloc = parts.netloc
    if port is not None:
        netloc = f"{netloc.rsplit(':', 1)[0] if parts.port else netloc}:{port}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, ""))


async def seed_guild(
    connection: asyncpg.Connection,
    server_id: str = "232769614004748288",
    name: str = "D-Base",
    members: int = 3,
    **columns: object,
) -> list[str]:
    """Insert a guild and ``members`` members; return their user ids."""
    await connection.execute(
        "INSERT INTO servers (server_id, name, is_default) VALUES ($1, $2, $3)",
        server_id,
        name,
        columns.get("is_default", True),
    )
    uids = [f"{server_id[:6]}{index:08d}" for index in range(members)]
    await connection.copy_records_to_table(
        "users",
        records=[
            (uid, server_id, f"member {index}", "online", "#5865f2")
            for index, uid in enumerate(uids)
        ],
        columns=["user_id", "server_id", "username", "status", "role_color"],
    )
    return uids


async def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> None:
    """Poll ``predicate`` (sync or async) until true; fail after a generous timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition did not become true in time")
        await asyncio.sleep(interval)


def presence_of(uid: str, **expected):
    """A ``Client.wait_for`` predicate: a presence frame for ``uid`` with these fields."""

    def match(frame: dict) -> bool:
        if frame.get("type") != "presence" or frame["data"].get("uid") != uid:
            return False
        return all(frame["data"].get(key) == value for key, value in expected.items())

    return match


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TcpForwarder:
    """A TCP port that forwards to PostgreSQL once ``start``ed: a database that comes up late.

    ``pause`` stops all traffic without closing anything, like a network cut that sends no
    reset (the case only a keep-alive check can detect); ``resume`` lets it flow again.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task] = set()
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    def pause(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    async def _forward(self, reader, writer) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)

        async def pipe(source, sink) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    await self.flowing.wait()
                    sink.write(data)
                    await sink.drain()
            sink.close()

        for task in (
            asyncio.create_task(pipe(reader, upstream_writer)),
            asyncio.create_task(pipe(upstream_reader, writer)),
        ):
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def postgres_plugin(server):
    """The plugin instance a running server loaded: a ``DbackServer`` of ``running_server``,
    or the ``Served`` of the ``dback`` fixture."""
    if isinstance(server, Served):
        return server.plugin("dback-postgres")
    return next(r.plugin for r in server.plugins.active if r.name == "dback-postgres")


async def listening(server, timeout: float = 10.0) -> None:
    """Wait until the server's plugin delivers every change (LISTEN on, resync applied)."""
    plugin = postgres_plugin(server)
    await wait_until(lambda: plugin.listener.listening, timeout)


@contextlib.asynccontextmanager
async def joined(guild: str) -> AsyncIterator[tuple[DbackServer, Client]]:
    """A dback with the installed plugin, delivering every change, and a client that joined
    ``guild``: where most live tests start."""
    async with running_server() as server:
        await listening(server)
        async with Client(server) as client:
            await client.join(guild)
            yield server, client


def run_dback(*arguments: str, dsn: str | None, stdin: str | None = None):
    """The installed ``dback`` command line, in a child process with its own environment."""
    env = {"PATH": "/usr/bin:/bin", "DBACK_PLUGINS": "dback-postgres"}
    if dsn is not None:
        env["DBACK_POSTGRES_DSN"] = dsn
    return subprocess.run(
        [sys.executable, "-m", "dback_core", *arguments],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=60,
    )


async def http_status(server, path: str) -> int:
    """The HTTP status a plain GET of ``path`` gets from a running server."""
    host, port = server.address

    def get() -> int:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    return await asyncio.to_thread(get)
