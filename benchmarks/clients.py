"""Load-generating clients that cost as little as possible, so the server is what gets measured.

``Drain`` is a raw asyncio protocol: it does the handshake itself (offering permessage-deflate
as browsers do), sends one ``connect``, answers pings, and afterwards only walks frame headers
to count data frames - it never decompresses, decodes or parses a payload. A small sample of
``Sampler`` clients (the real ``websockets`` client) parse every frame and record latency from
the scheduled time the server put inside each event.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time

from websockets.asyncio.client import connect as ws_connect

OFFER_DEFLATE = "permessage-deflate; client_max_window_bits"


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask); the mask is zero, which is valid and free."""
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    else:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    return header + b"\0\0\0\0" + payload


def connect_message(server: str) -> bytes:
    return masked_frame(0x1, json.dumps({"type": "connect", "data": {"server": server}}).encode())


def handshake(host: str, port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Extensions: {OFFER_DEFLATE}\r\n\r\n"
    ).encode()


class Drain(asyncio.Protocol):
    """Counts data frames; ``frames`` includes the server-list and the server-join."""

    __slots__ = (
        "buffer",
        "bytes",
        "closed",
        "first_at",
        "frames",
        "head",
        "host",
        "joined",
        "last_at",
        "pending",
        "port",
        "server",
        "skip",
        "transport",
    )

    def __init__(self, host: str, port: int, server: str, joined: asyncio.Future | None) -> None:
        self.host, self.port, self.server = host, port, server
        self.joined = joined
        self.transport: asyncio.Transport | None = None
        self.head = True
        self.buffer = b""
        self.skip = 0
        self.pending = 0
        self.frames = 0
        self.bytes = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(handshake(self.host, self.port))

    def data_received(self, data: bytes) -> None:
        self.bytes += len(data)
        if self.head:
            data = self.buffer + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = data
                return
            if b" 101 " not in data[: data.find(b"\r\n")]:
                self._fail(ConnectionError(data[: data.find(b"\r\n")].decode(errors="replace")))
                return
            self.head = False
            self.buffer = b""
            data = data[end + 4 :]
        frames = 0
        skip = self.skip
        if skip:
            if skip > len(data):
                self.skip = skip - len(data)
                return
            self.skip = 0
            data = data[skip:]
            frames += self.pending
            self.pending = 0
        if self.buffer:
            data, self.buffer = self.buffer + data, b""
        position, size = 0, len(data)
        while size - position >= 2:
            first, length = data[position], data[position + 1] & 0x7F
            header = 2
            if length == 126:
                if size - position < 4:
                    break
                length, header = int.from_bytes(data[position + 2 : position + 4], "big"), 4
            elif length == 127:
                if size - position < 10:
                    break
                length, header = int.from_bytes(data[position + 2 : position + 10], "big"), 10
            opcode = first & 0x0F
            is_data = opcode in (0x1, 0x2) or (opcode == 0 and first & 0x80)
            end = position + header + length
            if end > size:
                if opcode == 0x9:
                    break  # keep a partial ping whole in the buffer
                self.skip = end - size
                self.pending = 1 if is_data and first & 0x80 else 0
                position = size
                break
            if opcode == 0x9:  # ping: answer, or the server closes us as dead
                self.transport.write(masked_frame(0xA, data[position + header : end]))
            elif is_data and first & 0x80:
                frames += 1
            position = end
        if position < size:
            self.buffer = data[position:]
        if frames:
            now = time.monotonic()
            before = self.frames
            if not before:
                self.first_at = now
                self.transport.write(connect_message(self.server))
            self.frames = before + frames
            self.last_at = now
            if self.frames >= 2 and self.joined is not None and not self.joined.done():
                self.joined.set_result(now)

    def _fail(self, error: Exception) -> None:
        if self.joined is not None and not self.joined.done():
            self.joined.set_exception(error)
        self.transport.abort()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.joined is not None and not self.joined.done():
            self.joined.set_exception(exc or ConnectionError("closed before joining"))


async def open_drain(host: str, port: int, server: str) -> Drain:
    """A drain client that has joined ``server``; raises if it could not."""
    loop = asyncio.get_running_loop()
    joined = loop.create_future()
    _, protocol = await loop.create_connection(
        lambda: Drain(host, port, server, joined), host, port
    )
    await joined
    return protocol


async def open_drains(host: str, port: int, server: str, count: int, parallel: int) -> list[Drain]:
    """``count`` joined drain clients, at most ``parallel`` handshakes in flight."""
    gate = asyncio.Semaphore(parallel)

    async def one() -> Drain:
        async with gate:
            return await open_drain(host, port, server)

    return list(await asyncio.gather(*(one() for _ in range(count))))


class Sampler:
    """A parsing client: records latency (seconds) of every presence from its scheduled time."""

    def __init__(self, host: str, port: int, server: str) -> None:
        self.uri = f"ws://{host}:{port}/"
        self.server = server
        self.latencies: list[float] = []
        self.connection = None
        self.task: asyncio.Task | None = None

    async def open(self) -> None:
        self.connection = await ws_connect(
            self.uri, compression="deflate", max_size=None, open_timeout=60
        )
        await self.connection.recv()
        await self.connection.send(json.dumps({"type": "connect", "data": {"server": self.server}}))
        await self.connection.recv()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.connection:
            now = time.time()
            message = json.loads(raw)
            if message.get("type") == "presence":
                scheduled = float(message["data"]["username"].split("|", 1)[1])
                self.latencies.append(now - scheduled)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.connection.close()


def slow_reader(host: str, port: int, server: str) -> socket.socket:
    """A blocking socket that handshakes, joins, and then never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect((host, port))
    sock.sendall(handshake(host, port))
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(4096)
    sock.sendall(connect_message(server))
    return sock
