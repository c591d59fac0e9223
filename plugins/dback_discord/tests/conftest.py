"""Fixtures for the Discord plugin's tests: a fake Discord that discord.py is pointed at."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from discord_fake import FakeDiscord
from discord_world import build_world


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
