"""Shared compression never corrupts a viewer's stream: a property test of the fan-out.

Random joins, leaves, broadcasts, frames for one viewer and frames for many run through the
real ``Fanout`` whose transports record the bytes written. Each viewer's bytes are then read
the way a browser reads them: frame by frame, compressed messages through the viewer's own
zlib inflater, which keeps its window from message to message (context takeover). Every
viewer must read exactly the payloads it was sent, in order.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.protocol import State

from dback_core.wire import fanout as fanout_module
from dback_core.wire.deflate import OFF_LOOP_FROM, PLAIN_BELOW, TAIL, SharedDeflate
from dback_core.wire.fanout import Fanout, text_frame

GUILDS = ["a", "b"]


class RecordingTransport:
    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


@dataclass
class FakeProtocol:
    extensions: list
    state: State = State.OPEN


@dataclass(eq=False)
class FakeConnection:
    """What the fan-out touches of a ``ServerConnection``: protocol, transport, headers."""

    protocol: FakeProtocol
    transport: RecordingTransport = field(default_factory=RecordingTransport)
    request: None = None
    response: None = None
    remote_address: tuple[str, int] = ("127.0.0.1", 1)


def read_messages(data: bytes) -> list[bytes]:
    """Parse server frames and inflate compressed ones with one inflater for the stream."""
    inflater = zlib.decompressobj(wbits=-15)
    messages = []
    at = 0
    while at < len(data):
        first, second = data[at], data[at + 1]
        assert first & 0x0F == 0x1 and first & 0x80, "unfragmented text frames only"
        length, at = second & 0x7F, at + 2
        if length == 126:
            length, at = int.from_bytes(data[at : at + 2], "big"), at + 2
        elif length == 127:
            length, at = int.from_bytes(data[at : at + 8], "big"), at + 8
        payload, at = data[at : at + length], at + length
        if first & 0x40:
            payload = inflater.decompress(payload + TAIL)
        messages.append(bytes(payload))
    return messages


WORDS = [b"presence", b'{"uid":"', b"online", b"idle", b"#ffffff", b"member-", b'","', b"}"]


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """Presence-like text: words shared by all payloads (so compressors refer back to earlier
    messages) between random digits (so a reference to the wrong place reads wrong bytes)."""
    size = draw(st.sampled_from([10, 100, PLAIN_BELOW - 1, PLAIN_BELOW, 2000, OFF_LOOP_FROM + 10]))
    chooser = random.Random(draw(st.integers(0, 2**32)))
    parts = bytearray()
    while len(parts) < size:
        parts += chooser.choice(WORDS) + str(chooser.randrange(10**6)).encode()
    return bytes(parts[:size])


operations = st.one_of(
    st.tuples(st.just("connect"), st.sampled_from(["plain", "deflate", "history-free"])),
    st.tuples(st.just("join"), st.integers(0, 3), st.sampled_from(GUILDS), payloads()),
    st.tuples(st.just("leave"), st.integers(0, 3)),
    st.tuples(st.just("broadcast"), st.sampled_from(GUILDS), payloads()),
    st.tuples(st.just("broadcast"), st.sampled_from(GUILDS), payloads()),
    st.tuples(st.just("private"), st.integers(0, 3), payloads()),
    st.tuples(st.just("deliver"), st.lists(st.integers(0, 3), max_size=4), payloads()),
    st.tuples(st.just("turn")),
    st.tuples(st.just("wait"), st.sampled_from([0.1, fanout_module.SYNC_INTERVAL])),
)


class Scenario:
    """Runs operations against one ``Fanout`` and remembers what each viewer must read."""

    def __init__(self) -> None:
        self.now = 0.0
        self.fanout = Fanout(max_buffer=1 << 30, clock=lambda: self.now)
        self.connections: list[FakeConnection] = []
        self.expected: dict[FakeConnection, list[bytes]] = {}

    def pick(self, index: int) -> FakeConnection | None:
        live = [c for c in self.connections if c in self.fanout.viewers]
        return live[index % len(live)] if live else None

    def run(self, operation: tuple) -> None:
        kind, *args = operation
        if kind == "connect":
            extensions = {
                "plain": [],
                "deflate": [SharedDeflate(history=True)],
                "history-free": [SharedDeflate(history=False)],
            }[args[0]]
            connection = FakeConnection(FakeProtocol(extensions))
            self.connections.append(connection)
            self.expected[connection] = []
            self.fanout.add(connection)  # type: ignore[arg-type]
            return
        if kind == "turn":
            self.fanout.flush()
            return
        if kind == "wait":
            self.now += args[0]
            return
        if kind == "broadcast":
            guild, payload = args
            for connection in self.fanout.by_guild.get(guild, ()):
                self.expected[connection].append(payload)  # type: ignore[index]
            self.fanout.broadcast(guild, payload)
            return
        if kind == "deliver":
            indexes, payload = args
            chosen = {self.pick(i) for i in indexes} - {None}
            for connection in chosen:
                self.expected[connection].append(payload)  # type: ignore[index]
            self.fanout.deliver(chosen, payload)  # type: ignore[arg-type]
            return
        connection = self.pick(args[0])
        if connection is None:
            return
        viewer = self.fanout.viewers[connection]  # type: ignore[index]
        if kind == "join":
            self.fanout.move(viewer, args[1], args[1])
            self.private(connection, args[2])
        elif kind == "private":
            self.private(connection, args[1])
        elif kind == "leave":
            self.fanout.flush()  # what was queued before the close is on its way
            self.fanout.remove(connection)  # type: ignore[arg-type]
            connection.protocol.state = State.CLOSED

    def private(self, connection: FakeConnection, payload: bytes) -> None:
        """What ``DbackServer._send`` does: compressed by the fan-out, else sent plain."""
        self.expected[connection].append(payload)
        if not self.fanout.send(connection, payload):  # type: ignore[arg-type]
            self.fanout.flush()
            connection.transport.write(text_frame(payload))


@pytest.mark.slow
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operations, min_size=20, max_size=80))
def test_every_viewer_reads_exactly_its_frames(script):
    async def scenario() -> Scenario:
        run = Scenario()
        for operation in script:
            run.run(operation)
        run.fanout.flush()
        return run

    run = asyncio.run(scenario())
    for connection in run.connections:
        assert read_messages(bytes(connection.transport.written)) == run.expected[connection]


def test_in_sync_viewers_share_one_compressed_broadcast():
    """After a reset, viewers of one guild get the same bytes, smaller than history-free."""

    async def scenario() -> Scenario:
        run = Scenario()
        for _ in range(3):
            run.run(("connect", "deflate"))
        for index in range(3):
            run.run(("join", index, "a", b"j" * 2000))
        presence = b'{"type":"presence","server":"a","data":{"uid":"1","status":"online"}}'
        for _ in range(20):
            run.run(("broadcast", "a", presence))
        run.fanout.flush()
        return run

    run = asyncio.run(scenario())
    stream = run.fanout.streams["a"]
    assert len(stream.synced) == 3 and not stream.behind
    tails = {bytes(c.transport.written[-40:]) for c in run.connections}
    assert len(tails) == 1  # byte for byte the same stream
    first, *rest = (len(c.transport.written) for c in run.connections)
    assert all(size == first for size in rest)
    for connection in run.connections:
        assert read_messages(bytes(connection.transport.written)) == run.expected[connection]


def test_a_viewer_sent_its_own_compressed_frame_waits_for_the_next_reset():
    async def scenario() -> Scenario:
        run = Scenario()
        run.run(("connect", "deflate"))
        run.run(("connect", "deflate"))
        run.run(("join", 0, "a", b"small join"))
        run.run(("join", 1, "a", b"j" * 2000))
        run.run(("broadcast", "a", b"x" * 50))
        stream = run.fanout.streams["a"]
        assert len(stream.synced) == 2
        run.run(("private", 0, b"y" * PLAIN_BELOW))
        assert len(stream.synced) == 1 and len(stream.behind) == 1
        run.run(("broadcast", "a", b"x" * 50))  # too soon for a reset
        assert len(stream.behind) == 1
        run.run(("wait", fanout_module.SYNC_INTERVAL))
        run.run(("broadcast", "a", b"x" * 50))
        assert len(stream.synced) == 2 and not stream.behind
        run.fanout.flush()
        return run

    run = asyncio.run(scenario())
    for connection in run.connections:
        assert read_messages(bytes(connection.transport.written)) == run.expected[connection]


def test_a_guild_without_compressed_viewers_allocates_no_compressor():
    """About 32 KiB of zlib state per guild is spent only where some viewer shares it."""

    async def scenario() -> Scenario:
        run = Scenario()
        run.run(("connect", "plain"))
        run.run(("join", 0, "a", b"small join"))
        run.run(("broadcast", "a", b"x" * 50))
        run.fanout.flush()
        return run

    run = asyncio.run(scenario())
    assert run.fanout.streams["a"]._compressor is None
    (connection,) = run.connections
    assert read_messages(bytes(connection.transport.written)) == run.expected[connection]
