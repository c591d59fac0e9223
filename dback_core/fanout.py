"""Who watches which guild, and delivering one encoded frame to all of them.

Delivery never awaits a client: frames are written to each connection's buffer in one
synchronous pass (``websockets``' broadcast), so a client that stops reading cannot delay the
others. It can only fill its own buffer; past ``max_buffer`` bytes it is disconnected, which
bounds the memory one silent client can cost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.protocol import State

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Viewer:
    """Per-connection state: the guild it watches, as requested, and guilds it unlocked."""

    connection: ServerConnection
    guild: str | None = None
    requested: str | None = None
    authorized: set[str] = field(default_factory=set)


class Fanout:
    """The guild -> connections index and the non-blocking broadcast over it."""

    def __init__(self, max_buffer: int) -> None:
        self.max_buffer = max_buffer
        self.viewers: dict[ServerConnection, Viewer] = {}
        self.by_guild: dict[str, set[ServerConnection]] = {}
        self.slow_disconnects = 0

    def add(self, connection: ServerConnection) -> Viewer:
        viewer = Viewer(connection)
        self.viewers[connection] = viewer
        return viewer

    def remove(self, connection: ServerConnection) -> None:
        viewer = self.viewers.pop(connection, None)
        if viewer is not None and viewer.guild is not None:
            self._leave(connection, viewer.guild)

    def move(self, viewer: Viewer, guild: str, requested: str) -> None:
        """Make ``viewer`` watch ``guild`` only."""
        if viewer.guild is not None and viewer.guild != guild:
            self._leave(viewer.connection, viewer.guild)
        viewer.guild = guild
        viewer.requested = requested
        self.by_guild.setdefault(guild, set()).add(viewer.connection)

    def _leave(self, connection: ServerConnection, guild: str) -> None:
        members = self.by_guild.get(guild)
        if members is not None:
            members.discard(connection)
            if not members:
                del self.by_guild[guild]

    def watchers(self, guild: str) -> list[Viewer]:
        return [self.viewers[c] for c in self.by_guild.get(guild, ()) if c in self.viewers]

    def broadcast(self, guild: str, frame: bytes) -> int:
        """Send ``frame`` to every viewer of ``guild``; returns how many it was written to."""
        connections = self.by_guild.get(guild)
        if not connections:
            return 0
        return self._deliver(list(connections), frame)

    def broadcast_all(self, frame: bytes) -> int:
        return self._deliver(list(self.viewers), frame)

    def _deliver(self, connections: Iterable[ServerConnection], frame: bytes) -> int:
        ready = [c for c in connections if c.state is State.OPEN and not self._too_slow(c)]
        broadcast(ready, frame, text=True)
        return len(ready)

    def _too_slow(self, connection: ServerConnection) -> bool:
        transport = connection.transport
        if transport is None or transport.get_write_buffer_size() <= self.max_buffer:
            return False
        self.slow_disconnects += 1
        log.warning(
            "disconnecting %s: more than %d bytes unread",
            connection.remote_address,
            self.max_buffer,
        )
        transport.abort()
        return True
