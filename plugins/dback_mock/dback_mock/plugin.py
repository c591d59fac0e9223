"""The mock plugin's hooks. One instance per server, so every server has its own world.

Settings (environment):
    DBACK_MOCK_INTERVAL  seconds between simulation steps (default 3)
    DBACK_MOCK_SEED      integer seed for a reproducible world (default: random)
    DBACK_MOCK_PASSWORD  password of the passworded mock guild (default: none, so nobody
                         is admitted - passworded guilds never admit anyone by default)
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator
from typing import Any

from dback_core import SettingsError, hookimpl
from dback_core.events import Event
from dback_mock.world import MockWorld


def _read_settings() -> tuple[float, int | None, str | None]:
    """The settings above; a bad value raises a ``SettingsError`` naming its variable, which
    stops ``dback serve`` even when the mock is only loaded by default."""
    interval_text = os.environ.get("DBACK_MOCK_INTERVAL") or "3"
    try:
        interval = float(interval_text)
    except ValueError:
        raise SettingsError(
            "DBACK_MOCK_INTERVAL", f"must be a number, got {interval_text!r}"
        ) from None
    if not (interval > 0 and math.isfinite(interval)):
        raise SettingsError("DBACK_MOCK_INTERVAL", f"must be positive, got {interval_text!r}")
    seed_text = os.environ.get("DBACK_MOCK_SEED")
    try:
        seed = int(seed_text) if seed_text else None
    except ValueError:
        raise SettingsError("DBACK_MOCK_SEED", f"must be an integer, got {seed_text!r}") from None
    return interval, seed, os.environ.get("DBACK_MOCK_PASSWORD") or None


class MockPlugin:
    """Simulated guilds; an embedded default that yields to real providers."""

    dback_fallback_only = True

    def __init__(self) -> None:
        self.interval, seed, password = _read_settings()
        self.world = MockWorld(seed=seed, password=password)

    @hookimpl
    def get_server_data(self) -> dict[str, dict[str, Any]]:
        return self.world.servers()

    @hookimpl
    def get_user_data(self, server_id: str) -> dict[str, dict[str, Any]] | None:
        return self.world.users(server_id)

    @hookimpl
    def event_sources(self) -> list[Any]:
        return [self.simulate]

    async def simulate(self) -> AsyncIterator[Event]:
        while True:
            await asyncio.sleep(self.interval)
            for event in self.world.tick():
                yield event
