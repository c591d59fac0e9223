"""Who watches which guild, and delivering one encoded frame to all of them.

Delivery never awaits a client. A broadcast encodes its WebSocket frame once and queues it,
with a snapshot of its viewers, in O(1); on the next turn of the event loop each connection
gets all the frames queued for it in one ``transport.write``. Writing straight to the
transport skips ``websockets``' per-connection framing (about 10 us per delivery, which made
a 5,000-viewer broadcast cost 50 ms), and when events come faster than the loop turns, the
queue turns a burst into one system call per viewer instead of one per event.

Compression (permessage-deflate, negotiated by ``dback_core.wire.deflate``) keeps that shape: a
broadcast is compressed once by its guild's shared stream for the viewers in sync with it,
once without history for the viewers waiting for the stream's next reset, and the frames go
out like any other. Frames for one viewer (joins) are compressed without history, the big
ones off the event loop and cached (``dback_core.wire.joins``), and put that viewer behind its
stream until the next reset. While its join is being compressed, the frames for that viewer
are held and written after the join, in the order they were produced.

A client that stops reading can only fill its own transport buffer (and what is held for
it); past ``max_buffer`` bytes it is disconnected at once. A client whose writes stay paused
for longer than ``DBACK_MAX_CLIENT_LAG`` is disconnected too (``dback_core.wire.connections``),
which bounds the memory one silent client can cost however slowly its backlog grows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from dback_core.plugin.ratelimit import TokenBucket
from dback_core.wire.deflate import (
    OFF_LOOP_FROM,
    PLAIN_BELOW,
    HistoryFree,
    SharedDeflate,
    SharedStream,
    negotiated,
)
from dback_core.wire.joins import CompressedJoins
from dback_core.wire.limits import LogThrottle

log = logging.getLogger(__name__)

#: Seconds between resets of a guild's shared compressor while some of its viewers wait to
#: share it. A reset costs every sharing viewer one message compressed without history
#: (~125 B instead of ~20 B for a presence); waiting costs each waiting viewer that per
#: broadcast. A guild where nobody shares yet is reset at once.
SYNC_INTERVAL = 1.0


def server_frame(first_byte: int, payload: bytes) -> bytes:
    """An unmasked, unfragmented server-to-client frame: ``first_byte`` (FIN, RSV1 for a
    compressed message, the opcode), the shortest length encoding, then ``payload``."""
    length = len(payload)
    if length < 126:
        header = bytes((first_byte, length))
    elif length < 65536:
        header = bytes((first_byte, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first_byte, 127)) + length.to_bytes(8, "big")
    return header + payload


def text_frame(payload: bytes) -> bytes:
    """A text frame carrying ``payload`` as it is."""
    return server_frame(0x81, payload)


def compressed_frame(deflated: bytes) -> bytes:
    """A text frame with RSV1 set: ``deflated`` is a permessage-deflate compressed message."""
    return server_frame(0xC1, deflated)


class Viewer:
    """Per-connection state: the guild it watches, as requested, and guilds it unlocked.

    ``authorized`` maps each unlocked guild to the access fingerprint it was unlocked under
    (``ServerInfo.access``): a new password or a guild turning passworded changes the
    fingerprint, and the old unlock stops counting. ``grants`` (None until a plugin admits
    under a grant) names, per guild, the grant a plugin's ``authorize`` admitted it under, so
    the plugin can revoke that one admission (``Access.revoke``).

    Slotted: there is one per open connection, and idle connections are most of them.
    """

    __slots__ = (
        "address",
        "authorized",
        "connection",
        "deflate",
        "grants",
        "guild",
        "requested",
        "switches",
    )

    def __init__(self, connection: ServerConnection, deflate: SharedDeflate | None = None) -> None:
        self.connection = connection
        #: The negotiated compression, or None when the client did not offer it.
        self.deflate = deflate
        self.guild: str | None = None
        self.requested: str | None = None
        self.authorized: dict[str, str] = {}
        self.grants: dict[str, str] | None = None
        #: The client's address as limits and fair shares count it (``dback_core.wire.addresses``),
        #: set by the session from the socket and a trusted proxy's ``X-Forwarded-For``.
        self.address = "unknown"
        #: The viewer's guild switches (``connect``, ``get_user_data``), set by its session.
        self.switches: TokenBucket | None = None


def forget_handshake_headers(connection: ServerConnection) -> None:
    """Empty the handshake's request and response headers, which nothing reads once the
    connection is open (the remote address is kept). They are about 3.9 KiB of each idle
    connection's 15.5 KiB (measured with 3,000 idle viewers): a quarter of the memory."""
    for message in (connection.request, connection.response):
        if message is not None:
            message.headers.clear()


class Fanout:
    """The guild -> connections index and the non-blocking broadcast over it."""

    def __init__(
        self,
        max_buffer: int,
        clock: Callable[[], float] = time.monotonic,
        join_cache_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.max_buffer = max_buffer
        self.viewers: dict[ServerConnection, Viewer] = {}
        self.by_guild: dict[str, set[ServerConnection]] = {}
        self.slow_disconnects = 0
        self.slow_log = LogThrottle(log)
        #: Per watched guild: its broadcast compressor and which viewers can share its output.
        self.streams: dict[str, SharedStream[ServerConnection]] = {}
        self.history_free = HistoryFree()
        self.joins = CompressedJoins(join_cache_bytes)
        #: Per viewer whose big message is being compressed: the frames produced for it
        #: meanwhile, and their size, written after that message.
        self._held: dict[ServerConnection, tuple[list[bytes], list[int]]] = {}
        self._clock = clock
        #: Frames broadcast this loop turn, each with the connections it is for.
        self._batches: list[tuple[bytes, Collection[ServerConnection]]] = []

    def add(self, connection: ServerConnection) -> Viewer:
        """Register an open connection; its handshake headers are dropped (see
        ``forget_handshake_headers``)."""
        forget_handshake_headers(connection)
        viewer = Viewer(connection, negotiated(connection.protocol.extensions))
        self.viewers[connection] = viewer
        return viewer

    def remove(self, connection: ServerConnection) -> None:
        viewer = self.viewers.pop(connection, None)
        if viewer is not None and viewer.guild is not None:
            self._leave(connection, viewer.guild)

    def move(self, viewer: Viewer, guild: str, requested: str) -> None:
        """Make ``viewer`` watch ``guild`` only. It shares the guild's compressed broadcasts
        from the stream's next reset on."""
        connection = viewer.connection
        if viewer.guild is not None and viewer.guild != guild:
            self._leave(connection, viewer.guild)
        viewer.guild = guild
        viewer.requested = requested
        self.by_guild.setdefault(guild, set()).add(connection)
        stream = self.streams.get(guild)
        if stream is None:
            stream = self.streams[guild] = SharedStream(self._clock())
        elif connection in stream.synced:
            return  # a second join of the same guild: the join itself puts it behind
        stream.discard(connection)
        if viewer.deflate is None:
            stream.plain.add(connection)
        elif viewer.deflate.history:
            stream.behind.add(connection)
        else:
            stream.history_free.add(connection)

    def leave(self, viewer: Viewer) -> None:
        """Make ``viewer`` watch nothing: no broadcast reaches it until its next join."""
        if viewer.guild is not None:
            self._leave(viewer.connection, viewer.guild)
        viewer.guild = None
        viewer.requested = None

    def _leave(self, connection: ServerConnection, guild: str) -> None:
        members = self.by_guild.get(guild)
        if members is not None:
            members.discard(connection)
            if not members:
                del self.by_guild[guild]
        stream = self.streams.get(guild)
        if stream is not None:
            stream.discard(connection)
            if not stream:
                del self.streams[guild]

    def watchers(self, guild: str) -> list[Viewer]:
        return [self.viewers[c] for c in self.by_guild.get(guild, ())]

    def broadcast(self, guild: str, frame: bytes) -> int:
        """Send ``frame`` to every viewer of ``guild``; returns how many it was queued for.

        Compressed once for the viewers in the guild's shared stream, once without history
        for the other viewers that negotiated compression, and not at all for the rest.
        """
        stream = self.streams.get(guild)
        if stream is None:
            return 0
        if stream.behind and (
            not stream.synced or self._clock() - stream.reset_at >= SYNC_INTERVAL
        ):
            stream.reset(self._clock())
        if stream.synced:
            self._queue(compressed_frame(stream.compress(frame)), tuple(stream.synced))
        if stream.behind or stream.history_free:
            fresh = compressed_frame(self.history_free.compress(frame))
            self._queue(fresh, (*stream.behind, *stream.history_free))
        if stream.plain:
            self._queue(text_frame(frame), tuple(stream.plain))
        return len(stream)

    def broadcast_all(self, frame: bytes) -> int:
        return self.deliver(tuple(self.viewers), frame)

    def deliver(self, connections: Collection[ServerConnection], frame: bytes) -> int:
        """Send ``frame`` to ``connections`` without awaiting any of them; returns how many
        it was queued for. Everything the server sends to more than the one client whose
        request it answers goes through here; a guild's broadcasts go through ``broadcast``.

        The frame is outside every guild's shared stream: viewers that negotiated
        compression get it compressed without history, and fall behind their stream.
        """
        if len(frame) < PLAIN_BELOW:
            self._queue(text_frame(frame), tuple(connections))
            return len(connections)
        plain: list[ServerConnection] = []
        deflated: list[ServerConnection] = []
        for connection in connections:
            viewer = self.viewers.get(connection)
            if viewer is None or viewer.deflate is None:
                plain.append(connection)
            else:
                deflated.append(connection)
                self._fall_behind(viewer)
        if deflated:
            self._queue(compressed_frame(self.history_free.compress(frame)), deflated)
        if plain:
            self._queue(text_frame(frame), plain)
        return len(connections)

    def send(self, connection: ServerConnection, frame: str | bytes) -> bool:
        """Write ``frame`` to one client, compressed, after everything queued; False when it
        is for ``websockets`` to send uncompressed instead (no compression negotiated, or a
        frame too small to be worth it, which leaves the viewer in its shared stream)."""
        viewer = self.viewers.get(connection)
        if viewer is None or viewer.deflate is None or len(frame) < PLAIN_BELOW:
            return False
        payload = frame.encode() if isinstance(frame, str) else frame
        self.flush()
        self._fall_behind(viewer)
        self._write(connection, compressed_frame(self.history_free.compress(payload)))
        return True

    async def send_big(self, viewer: Viewer, frame: bytes, key: object) -> None:
        """Write ``frame`` (a join, a member list) to one viewer after everything queued for
        it, compressed off the event loop and cached under ``key`` when the viewer negotiated
        compression.

        Frames produced for the viewer while it waits are held and follow the message. When
        the viewer changed guilds meanwhile (it was taken out of a guild whose access
        changed), the message is dropped: what it showed is no longer the viewer's to see.
        """
        connection = viewer.connection
        if viewer.deflate is None or len(frame) < OFF_LOOP_FROM or connection in self._held:
            if not self.send(connection, frame):
                self.flush()
                self._write(connection, text_frame(frame))
            return
        self.flush()
        self._fall_behind(viewer)
        guild = viewer.guild
        self._held[connection] = ([], [0])
        try:
            deflated = await self.joins.deflated(key, frame)
        finally:
            held, _ = self._held.pop(connection)
        if viewer.guild == guild:
            self._write(connection, compressed_frame(deflated))
        for data in held:
            self._write(connection, data)

    def _fall_behind(self, viewer: Viewer) -> None:
        if viewer.guild is not None:
            stream = self.streams.get(viewer.guild)
            if stream is not None:
                stream.fall_behind(viewer.connection)

    def _queue(self, wire: bytes, connections: Collection[ServerConnection]) -> None:
        if not connections:
            return
        if not self._batches:
            asyncio.get_running_loop().call_soon(self.flush)
        self._batches.append((wire, connections))

    def flush(self) -> None:
        """Write every queued frame now; call before sending any viewer anything else, so
        frames reach each client in the order they were produced."""
        batches, self._batches = self._batches, []
        if len(batches) == 1:
            wire, connections = batches[0]
            for connection in connections:
                self._write(connection, wire)
            return
        merged: dict[ServerConnection, list[bytes]] = {}
        for wire, connections in batches:
            for connection in connections:
                queued = merged.get(connection)
                if queued is None:
                    merged[connection] = [wire]
                else:
                    queued.append(wire)
        for connection, queued in merged.items():
            self._write(connection, queued[0] if len(queued) == 1 else b"".join(queued))

    def _write(self, connection: ServerConnection, data: bytes) -> None:
        if connection.protocol.state is not State.OPEN or self._too_slow(connection):
            return
        if connection.transport.is_closing():
            return
        if self._held and connection in self._held:
            self._hold(connection, data)
            return
        connection.transport.write(data)

    def _hold(self, connection: ServerConnection, data: bytes) -> None:
        held, size = self._held[connection]
        held.append(data)
        size[0] += len(data)
        if size[0] + connection.transport.get_write_buffer_size() > self.max_buffer:
            held.clear()
            self.cut_slow(connection, f"more than {self.max_buffer} bytes unread")

    def drop_stalled(self) -> int:
        """Abort every connection whose unsent data has paused its writes; returns how many.

        Done before closing the server: ``websockets`` sends its close frame behind that data
        and waits, with no deadline, for the client to read it, so one client that stopped
        reading (but is still under ``max_buffer``) would hold the shutdown forever.
        """
        dropped = 0
        for connection in list(self.viewers):
            transport = connection.transport
            if transport is None or transport.is_closing():
                continue
            if transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]:
                transport.abort()
                dropped += 1
        return dropped

    def _too_slow(self, connection: ServerConnection) -> bool:
        transport = connection.transport
        if transport is None or transport.get_write_buffer_size() <= self.max_buffer:
            return False
        self.cut_slow(connection, f"more than {self.max_buffer} bytes unread")
        return True

    def cut_slow(self, connection: ServerConnection, reason: str) -> None:
        """Disconnect a client that does not read what it is sent, now."""
        self.slow_disconnects += 1
        self.slow_log.warning("disconnecting %s: %s", connection.remote_address, reason)
        connection.transport.abort()
