"""The figures in the README's "Large guilds" section: a 100,000-member guild, measured.

The fake Discord runs in its own process, so its work and memory are not counted. Nothing
here asserts a duration (the machine is shared); the figures are logged, and what must hold
at any speed - the join fits a client's buffer, the guild is listed with statuses - is
asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route
from discord_world import FAST_BOT

from dback_core.testing import Client, running_server

log = logging.getLogger(__name__)

MEMBERS = 100_000
BIG = 333333333333333333
CLIENT_BUFFER = 4 * 1024 * 1024


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class LoopLag:
    """The longest time the event loop was blocked, seen by a task that wakes every 2 ms."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.002)
            self.worst = max(self.worst, time.perf_counter() - started - 0.002)

    def start(self) -> None:
        self.worst = 0.0
        self.task = asyncio.create_task(self._watch())

    async def stop(self) -> float:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        return self.worst


@pytest.mark.slow
async def test_a_100k_member_guild_starts_lists_its_online_members_and_fits_a_join(
    monkeypatch, tmp_path
):
    here = Path(__file__).parent
    fake = subprocess.Popen(
        [sys.executable, str(here / "discord_fake_process.py"), str(MEMBERS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=here,
    )
    try:
        port = int(await asyncio.to_thread(fake.stdout.readline))
        monkeypatch.setattr(Route, "BASE", f"http://127.0.0.1:{port}/api/v10")
        monkeypatch.setattr(
            DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(f"ws://127.0.0.1:{port}/gateway")
        )
        path = tmp_path / "discord.toml"
        path.write_text(FAST_BOT)
        monkeypatch.setenv("DBACK_DISCORD_TOKEN", "bot-token-for-tests")
        monkeypatch.setenv("DBACK_DISCORD_CONFIG", str(path))
        environ = {"DBACK_PLUGINS": "dback-discord", "DBACK_STRICT_PLUGINS": "1"}
        lag = LoopLag()
        memory_before = rss_mib()
        started = time.perf_counter()
        lag.start()
        async with running_server(environ=environ, provider_timeout=120.0) as server:
            startup = time.perf_counter() - started
            startup_lag = await lag.stop()
            memory_after = rss_mib()
            async with Client(server, max_size=None) as client:
                lag.start()
                began = time.perf_counter()
                await client.send({"type": "connect", "data": {"server": str(BIG)}})
                raw = await asyncio.wait_for(client.connection.recv(), 60)
                join_time = time.perf_counter() - began
                join_lag = await lag.stop()
    finally:
        fake.stdin.close()
        fake.wait(30)
    join = json.loads(raw)
    users = join["data"]["users"]
    size = len(raw.encode())
    figures = {
        "members": MEMBERS,
        "startup_s": round(startup, 2),
        "startup_worst_loop_block_ms": round(startup_lag * 1000, 1),
        "memory_mib": round(memory_after - memory_before, 1),
        "join_members": len(users),
        "join_bytes": size,
        "join_s": round(join_time, 3),
        "join_worst_loop_block_ms": round(join_lag * 1000, 1),
    }
    log.warning("100k-member guild figures: %s", figures)
    (tmp_path / "figures.json").write_text(json.dumps(figures))
    assert join["type"] == "server-join"
    assert size < CLIENT_BUFFER
    assert len(users) == MEMBERS // 5  # the online fifth (the bot has no presence here)
    assert all(user["status"] == "online" for user in users.values())
