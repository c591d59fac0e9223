"""The mock plugin's hooks. One instance per server, so every server has its own world.

Settings: ``SETTINGS`` below, read by the core's settings API (``dback plugins`` shows them).
A passworded guild never admits anyone by default: the mock's has no password unless
``DBACK_MOCK_PASSWORD`` gives it one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from dback_core import hookimpl
from dback_core.plugin.events import Event
from dback_core.plugin.settings import Setting, read
from dback_mock.world import MockWorld


def _positive(interval: float) -> None:
    if interval <= 0:
        raise ValueError(f"must be positive, got {interval:g}")


SETTINGS = (
    Setting(
        "DBACK_MOCK_INTERVAL",
        float,
        3.0,
        "seconds between simulation steps",
        check=_positive,
    ),
    Setting("DBACK_MOCK_SEED", int, None, "integer seed for a reproducible world (none: random)"),
    Setting(
        "DBACK_MOCK_PASSWORD",
        str,
        None,
        "password of the passworded mock guild (none: nobody is admitted)",
        secret=True,
    ),
)


class MockPlugin:
    """Simulated guilds; an embedded default that yields to real providers."""

    dback_fallback_only = True
    dback_settings = SETTINGS

    def __init__(self) -> None:
        values = read(SETTINGS)
        self.interval: float = values["DBACK_MOCK_INTERVAL"]
        self.world = MockWorld(
            seed=values["DBACK_MOCK_SEED"], password=values["DBACK_MOCK_PASSWORD"]
        )

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
