"""The figures in the README's "Sharding" section: a bot in 3 shards x 300 guilds, measured.

The fake Discord runs in its own process, so its work and memory are not counted. Nothing
here asserts a duration (the machine is shared); the figures are logged, and what must hold
at any speed - every guild listed once, statuses served from every shard - is asserted.
"""

from __future__ import annotations

import asyncio
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
from discord_shard_world import guild_id, member_id
from discord_world import FAST_BOT
from test_discord_large_guild_figures import rss_mib

from dback_core.testing import Client, running_server

log = logging.getLogger(__name__)

SHARDS = 3
GUILDS = SHARDS * 300
MEMBERS = 50


@pytest.mark.slow
async def test_a_bot_in_3_shards_of_300_guilds_starts_and_lists_every_guild(monkeypatch, tmp_path):
    here = Path(__file__).parent
    command = [sys.executable, str(here / "discord_fake_process.py"), "shards"]
    fake = subprocess.Popen(
        [*command, str(SHARDS), str(GUILDS), str(MEMBERS)],
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
        path.write_text(FAST_BOT + 'shards = "auto"\n')
        monkeypatch.setenv("DBACK_DISCORD_TOKEN", "bot-token-for-tests")
        monkeypatch.setenv("DBACK_DISCORD_CONFIG", str(path))
        environ = {"DBACK_PLUGINS": "dback-discord", "DBACK_STRICT_PLUGINS": "1"}
        memory_before = rss_mib()
        started = time.perf_counter()
        async with running_server(environ=environ, provider_timeout=120.0) as server:
            startup = time.perf_counter() - started
            memory_after = rss_mib()
            detail = server.plugins.find("dback-discord").detail or ""
            async with Client(server, max_size=None) as client:
                listed = client.server_list
                joins = [await client.join(str(guild_id(n))) for n in (0, 1, 2)]
    finally:
        fake.stdin.close()
        fake.wait(30)
    figures = {
        "shards": SHARDS,
        "guilds": GUILDS,
        "members_per_guild": MEMBERS,
        "startup_s": round(startup, 2),
        "memory_mib": round(memory_after - memory_before, 1),
    }
    log.warning("3 shards x 300 guilds figures: %s", figures)
    (tmp_path / "figures.json").write_text(json.dumps(figures))
    assert detail.startswith("3 shards: 0 ready, 1 ready, 2 ready")
    assert set(listed) == {str(guild_id(number)) for number in range(GUILDS)}
    for number, join in enumerate(joins):  # guilds 0, 1, 2: one on each shard
        users = join["data"]["users"]
        assert len(users) == MEMBERS + 1  # and the bot
        assert users[str(member_id(number, 0))]["status"] == "online"
