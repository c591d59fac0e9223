"""Fixtures for the Redis plugin: a unique key namespace and ACL users per test on the real
Redis at 127.0.0.1:6379, and real ``dback serve`` processes."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from dback_process import DbackProcess, other_plugins
from redis.asyncio import Redis

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


@pytest.fixture(autouse=True)
def redis_and_mock_only(dback_environ, monkeypatch):
    """This plugin's tests see the Redis plugin and the mock, whatever else is installed, and
    none of the shell's DBACK_* variables (``dback_environ``, dback-core's pytest plugin)."""
    monkeypatch.delenv("DBACK_PLUGINS", raising=False)
    monkeypatch.setenv("DBACK_DISABLE_PLUGINS", other_plugins())


@pytest.fixture
def start_dback(namespace, tmp_path):
    """Start ``dback serve`` processes (role ``edge`` unless told); all stop with the test."""
    started: list[DbackProcess] = []

    async def start(url: str, role: str = "edge", **extra_env: str) -> DbackProcess:
        log_path = tmp_path / f"dback{len(started)}-{role}.log"
        process = DbackProcess(namespace.prefix, url, role, log_path, **extra_env)
        started.append(process)
        await process.ready()
        return process

    yield start
    for process in started:
        process.stop()
