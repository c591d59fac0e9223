"""Fixtures for the Redis plugin: a unique key namespace and ACL users per test on the real
Redis at 127.0.0.1:6379, and real ``dback serve`` processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from dback_core.loading.plugins import ENTRY_POINT_GROUP, normalize_name

REDIS_URL = "redis://127.0.0.1:6379/0"


class Namespace:
    """One test's slice of Redis: a key prefix, and ACL users restricted to it whose
    connections a test can cut (``lock_out``) and restore (``let_in``)."""

    def __init__(self, prefix: str, admin: Redis) -> None:
        self.prefix = prefix
        self.admin = admin
        self.users: list[str] = []

    async def new_user(self, role: str) -> str:
        """Create an ACL user for ``role``; returns a URL that logs in as it."""
        user = f"{self.prefix}-{role}"
        password = secrets.token_hex(8)
        await self.admin.execute_command(
            "ACL",
            "SETUSER",
            user,
            "reset",
            "on",
            f">{password}",
            f"~{self.prefix}:*",
            f"&{self.prefix}:*",
            "+@all",
        )
        self.users.append(user)
        return f"redis://{user}:{password}@127.0.0.1:6379/0"

    async def lock_out(self, role: str) -> None:
        """Disable the user and kill its connections: a Redis outage for its processes."""
        user = f"{self.prefix}-{role}"
        await self.admin.execute_command("ACL", "SETUSER", user, "off")
        await self.admin.execute_command("CLIENT", "KILL", "USER", user)

    async def let_in(self, role: str) -> None:
        await self.admin.execute_command("ACL", "SETUSER", f"{self.prefix}-{role}", "on")

    async def kill(self, name_part: str, kind: str | None = None) -> int:
        """CLIENT KILL every connection whose name contains ``name_part`` (and of ``kind``)."""
        killed = 0
        for client in await self.admin.client_list(_type=kind):
            if name_part in client.get("name", ""):
                await self.admin.execute_command("CLIENT", "KILL", "ID", client["id"])
                killed += 1
        return killed


@pytest.fixture
async def namespace() -> AsyncIterator[Namespace]:
    admin = Redis.from_url(REDIS_URL, decode_responses=True)
    await admin.ping()  # no Redis is a failure, never a skip
    space = Namespace(f"dbacktest{secrets.token_hex(4)}", admin)
    try:
        yield space
    finally:
        for user in space.users:
            await admin.execute_command("ACL", "DELUSER", user)
        keys = [key async for key in admin.scan_iter(match=f"{space.prefix}:*")]
        if keys:
            await admin.delete(*keys)
        await admin.aclose()


def _other_plugins() -> str:
    names = {normalize_name(ep.name) for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return ",".join(sorted(names - {"dback-redis", "dback-mock"}))


@pytest.fixture(autouse=True)
def redis_and_mock_only(dback_environ, monkeypatch):
    """This plugin's tests see the Redis plugin and the mock, whatever else is installed, and
    none of the shell's DBACK_* variables (``dback_environ``, dback-core's pytest plugin)."""
    monkeypatch.delenv("DBACK_PLUGINS", raising=False)
    monkeypatch.setenv("DBACK_DISABLE_PLUGINS", _other_plugins())


class DbackProcess:
    """``dback serve`` in its own process with the Redis plugin, on a port the OS picks."""

    def __init__(
        self, namespace: Namespace, url: str, role: str, log_path: Path, **extra_env: str
    ) -> None:
        inherited = {name: value for name, value in os.environ.items() if name != "DBACK_PLUGINS"}
        env = {
            **inherited,
            "DBACK_REDIS_URL": url,
            "DBACK_REDIS_ROLE": role,
            "DBACK_REDIS_PREFIX": namespace.prefix,
            "DBACK_DISABLE_PLUGINS": _other_plugins(),
            "DBACK_PORT": "0",
            **extra_env,
        }
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dback_core", "serve", "--port", "0"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = ""

    async def ready(self, timeout: float = 30.0) -> str:
        """The ws:// URL once the process logs that it is serving."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            found = re.search(r"on (ws://[\d.]+:\d+)", self.log_path.read_text())
            if found:
                self.url = found.group(1)
                return self.url
            if self.process.poll() is not None:
                raise RuntimeError("dback exited:\n" + self.log_path.read_text())
            await asyncio.sleep(0.05)
        raise TimeoutError("dback did not start:\n" + self.log_path.read_text())

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def api(self, path: str) -> Any:
        """The JSON at ``path`` of this process's HTTP side."""
        host, port = self.url.removeprefix("ws://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return json.loads(raw.partition(b"\r\n\r\n")[2])

    async def redis_detail(self) -> str:
        """What ``/api/plugins`` says of the Redis plugin: its role, Redis and prefix."""
        described = await self.api("/api/plugins")
        entry = next(e for e in described["plugins"] if e["name"] == "dback-redis")
        return entry["detail"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused process cannot terminate
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def start_dback(namespace, tmp_path):
    """Start ``dback serve`` processes (role ``edge`` unless told); all stop with the test."""
    started: list[DbackProcess] = []

    async def start(url: str, role: str = "edge", **extra_env: str) -> DbackProcess:
        log_path = tmp_path / f"dback{len(started)}-{role}.log"
        process = DbackProcess(namespace, url, role, log_path, **extra_env)
        started.append(process)
        await process.ready()
        return process

    yield start
    for process in started:
        process.stop()
