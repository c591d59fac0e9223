"""Sharding: the bot's guilds spread over several gateway connections, served as one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from discord_fake import FakeDiscord
from discord_shard_world import build_sharded_world, channel_id, guild_id, member_id
from discord_world import discord_dback
from playwright.async_api import async_playwright, expect
from test_discord_health import health, http_get, wait_for_status
from test_discord_session_starts import wait_until

from dback_core.plugin.health import FAILED, SERVING
from dback_core.testing import Client

SHARDS = 3
#: Two guilds per shard.
GUILDS = 6
CHROMIUM = "/usr/bin/chromium"
#: Generous: waiting for the browser, never a claim about speed.
WAIT_MS = 15_000


@pytest.fixture
async def sharded() -> AsyncIterator[FakeDiscord]:
    world = build_sharded_world(GUILDS, members=3)
    world.recommended_shards = SHARDS
    await world.start()
    try:
        with world.redirect():
            yield world
    finally:
        await world.stop()


def detail(server) -> str:
    return server.plugins.find("dback-discord").detail or ""


def guild_creates(fake: FakeDiscord) -> Counter[str]:
    """How many sessions each guild's GUILD_CREATE went to."""
    return Counter(
        payload["d"]["id"]
        for session in fake.sessions.values()
        for payload in session.history
        if payload["t"] == "GUILD_CREATE"
    )


async def viewer_hears(client: Client, number: int, fake: FakeDiscord, status: str) -> dict:
    """Guild ``number``'s first member changes status; the viewer's presence frame."""
    await fake.set_status(guild_id(number), member_id(number, 0), status)
    return await client.recv_type("presence", timeout=10)


async def test_three_shards_serve_every_guild_once_and_survive_one_shard_dropping(
    sharded, monkeypatch, tmp_path
):
    fake = sharded
    async with discord_dback(fake, monkeypatch, tmp_path, f"shards = {SHARDS}\n") as server:
        await wait_for_status(server, SERVING)
        settled = detail(server)
        async with contextlib.AsyncExitStack() as stack:
            # Guilds 0, 1, 2 are on shards 2, 0, 1 (their snowflakes' timestamps in turn).
            viewers = [await stack.enter_async_context(Client(server)) for _ in range(3)]
            listed = viewers[0].server_list
            for number, viewer in enumerate(viewers):
                await viewer.join(str(guild_id(number)))
            heard = [await viewer_hears(v, n, fake, "idle") for n, v in enumerate(viewers)]
            said = []
            for number, viewer in enumerate(viewers):
                guild = guild_id(number)
                await fake.say(guild, channel_id(guild), member_id(number, 0), f"hi {number}")
                said.append(await viewer.recv_type("message", timeout=10))

            dropped = 2  # the shard of guild 0
            fake.held_shards[dropped] = asyncio.Event()
            await fake.drop_shard(dropped)
            await wait_until(lambda: f"{dropped} reconnecting" in detail(server))
            during = detail(server)
            _, plugins = await http_get(server, "/api/plugins")  # what the status page shows
            others = [await viewer_hears(viewers[n], n, fake, "dnd") for n in (1, 2)]
            await fake.set_status(guild_id(0), member_id(0, 0), "dnd")  # while it is down
            fake.held_shards[dropped].set()
            replayed = await viewers[0].recv_type("presence", timeout=10)
            await wait_until(lambda: "reconnecting" not in detail(server))
            after = detail(server)
    assert set(listed) == {str(guild_id(number)) for number in range(GUILDS)}
    assert guild_creates(fake) == Counter({str(guild_id(n)): 1 for n in range(GUILDS)})
    assert sorted(shard for _, shard, _ in fake.identify_log) == [(0, 3), (1, 3), (2, 3)]
    assert [frame["data"]["uid"] for frame in heard] == [str(member_id(n, 0)) for n in range(3)]
    assert [frame["data"]["message"] for frame in said] == ["hi 0", "hi 1", "hi 2"]
    assert settled.startswith("3 shards: 0 ready, 1 ready, 2 ready")
    assert "2 reconnecting" in during and "0 ready" in during and "1 ready" in during
    assert "3 shards: 0 ready, 1 ready, 2 reconnecting" in plugins
    assert [frame["data"]["status"] for frame in others] == ["dnd", "dnd"]
    assert replayed["data"]["uid"] == str(member_id(0, 0)) and replayed["data"]["status"] == "dnd"
    assert after.startswith("3 shards: 0 ready, 1 ready, 2 ready")
    assert (fake.identifies, fake.resumes) == (3, 1)


async def test_sharding_required_switches_to_the_recommended_count(
    sharded, monkeypatch, tmp_path, caplog
):
    sharded.max_guilds_per_shard = 2  # one connection for six guilds is refused (4011)
    async with discord_dback(sharded, monkeypatch, tmp_path) as server:
        await wait_for_status(server, SERVING)
        async with Client(server) as client:
            listed = client.server_list
            join = await client.join(str(guild_id(4)))
    shards = [shard for _, shard, _ in sharded.identify_log]
    assert shards[0] == (0, 1) and sorted(shards[1:]) == [(0, 3), (1, 3), (2, 3)]
    assert set(listed) == {str(guild_id(number)) for number in range(GUILDS)}
    assert join["data"]["users"][str(member_id(4, 0))]["status"] == "online"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("4011" in message and "3 shards" in message for message in warnings)


async def test_auto_runs_the_shard_count_discord_recommends(sharded, monkeypatch, tmp_path):
    async with discord_dback(sharded, monkeypatch, tmp_path, 'shards = "auto"\n') as server:
        await wait_for_status(server, SERVING)
        async with Client(server) as client:
            listed = client.server_list
    assert sorted(shard for _, shard, _ in sharded.identify_log) == [(0, 3), (1, 3), (2, 3)]
    assert len(listed) == GUILDS


@pytest.mark.browser
async def test_the_status_page_shows_each_shards_state_as_it_changes(
    sharded, monkeypatch, tmp_path
):
    """In a real browser: the plugin's line on the status page follows a shard that drops
    and resumes."""
    fake = sharded
    async with discord_dback(fake, monkeypatch, tmp_path, f"shards = {SHARDS}\n") as server:
        await wait_for_status(server, SERVING)
        host, port = server.address
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            try:
                page = await browser.new_page()
                await page.goto(f"http://{host}:{port}/")
                line = page.locator('#plugins .plugin[data-name="dback-discord"] .detail')
                await expect(line).to_contain_text(
                    "3 shards: 0 ready, 1 ready, 2 ready", timeout=WAIT_MS
                )
                fake.held_shards[1] = asyncio.Event()
                await fake.drop_shard(1)
                await expect(line).to_contain_text("1 reconnecting", timeout=WAIT_MS)
                fake.held_shards[1].set()
                await expect(line).to_contain_text("0 ready, 1 ready, 2 ready", timeout=WAIT_MS)
            finally:
                await browser.close()


@pytest.mark.slow
async def test_sharding_refused_even_at_the_recommended_count_fails_instead_of_guessing(
    sharded, monkeypatch, tmp_path
):
    sharded.max_guilds_per_shard = 1  # two guilds per shard at 3 shards: still refused
    async with discord_dback(sharded, monkeypatch, tmp_path, "failed_retry = 30\n") as server:
        await wait_for_status(server, FAILED)
        reason = health(server).reason
        await asyncio.sleep(0.5)
        identified = [shard for _, shard, _ in sharded.identify_log]
    assert identified[0] == (0, 1) and sorted(identified[1:]) == [(0, 3), (1, 3), (2, 3)]
    assert "refused 3 shard(s)" in reason and "4011" in reason and "recommends 3" in reason
