"""Fixtures for the Discord plugin's tests: a fake Discord that discord.py is pointed at."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route
from discord_fake import FakeDiscord
from discord_world import build_world

#: Port 9 (discard) on this host: nothing listens, so a stray call fails fast and locally.
NOWHERE = "127.0.0.1:9"


@pytest.fixture(autouse=True)
def never_the_real_discord(dback_environ, monkeypatch):
    """Outside the ``fake`` fixture, discord.py's URLs lead nowhere instead of to Discord;
    and none of the shell's DBACK_* variables (a real bot token) reach a test
    (``dback_environ``, dback-core's pytest plugin)."""
    monkeypatch.setattr(Route, "BASE", f"http://{NOWHERE}/api/v10")
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(f"ws://{NOWHERE}/"))


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    """The standard world, served on 127.0.0.1; discord.py talks only to it meanwhile."""
    world = build_world()
    await world.start()
    try:
        with world.redirect():
            yield world
    finally:
        await world.stop()
