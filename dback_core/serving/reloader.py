"""The periodic reload: every ``refresh_seconds``, the guild list and the guilds in use.

Providers that push no events (or missed some while disconnected) are caught up here. A
reload sends viewers a new world only where something changed, and reports what it resent
to ``event_applied`` as a ``Refresh``, so that a bus can pass it on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from dback_core.plugin.events import Event, Refresh
from dback_core.wire.fanout import Fanout
from dback_core.world.directory import Directory, Guild

log = logging.getLogger(__name__)


async def reload_periodically(interval: float, reload: Callable[[], Awaitable[None]]) -> None:
    """Call ``reload`` every ``interval`` seconds (at least one) until cancelled; a failed
    round is logged and the next one runs as planned."""
    interval = max(interval, 1.0)
    while True:
        await asyncio.sleep(interval)
        try:
            await reload()
        except Exception:
            log.exception("periodic refresh failed")


@dataclass
class ReloadInputs:
    """What a reload round reads and calls: the guilds, who watches them, how the server
    refreshes and resends, whom it tells, and whether unwatched guilds stay loaded."""

    directory: Directory
    fanout: Fanout
    refresh: Callable[[str | None], Awaitable[bool]]
    refresh_viewers: Callable[[Guild], Awaitable[None]]
    event_applied: Callable[[Event, str | None], Awaitable[None]]
    keep_loaded: Callable[[], bool]


class Reloader:
    """One round of the periodic reload for one server."""

    def __init__(self, inputs: ReloadInputs) -> None:
        self.inputs = inputs
        #: Rounds completed, for diagnostics (and tests that wait for the next round).
        self.rounds = 0

    async def reload_all(self) -> None:
        """Reload the guild list, then every watched (or kept) guild.

        A guild nobody watches is dropped instead (unless ``keep_loaded``). A watched guild
        whose first load failed was served empty and not kept; it is tried again here, so its
        viewers get their world once a provider answers.
        """
        inputs = self.inputs
        directory = inputs.directory
        loaded = list(directory.guilds.items())  # guilds the list reload adds are fresh
        if await inputs.refresh(None):
            await inputs.event_applied(Refresh(None), None)
        for key, guild in loaded:
            if not inputs.keep_loaded() and not inputs.fanout.by_guild.get(key):
                directory.evict(key)
                continue
            await self._reload(key, guild)
        for key in [key for key in inputs.fanout.by_guild if key not in directory.guilds]:
            await self._reload(key, None)
        self.rounds += 1

    async def _reload(self, key: str, before: Guild | None) -> None:
        fresh = await self.inputs.directory.load(key)
        if fresh is None or self.inputs.directory.guilds.get(key) is not fresh:
            return  # no longer listed, or its providers are still failing
        if before is None or not fresh.looks_like(before):
            await self.inputs.refresh_viewers(fresh)
            await self.inputs.event_applied(Refresh(key), None)
