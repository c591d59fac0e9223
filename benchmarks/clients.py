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
import contextlib
import json
import os
import socket
import time

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

OFFER_DEFLATE = "permessage-deflate; client_max_window_bits"
#: Payload bytes past which a drain discards instead of reading (see ``Drain._discard``).
BIG = 65536


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


class Drain:
    """Counts data frames; ``frames`` includes the server-list and the server-join.

    After joining it is never woken by the event loop: ``sweep`` reads every drain's socket
    without blocking a few times a second, so a broadcast to 10,000 drains costs the client
    a few system calls per drain per sweep, however many frames arrived in between.
    """

    __slots__ = (
        "buffer",
        "closed",
        "first_at",
        "frames",
        "joined_bytes",
        "last_at",
        "pending",
        "received",
        "skip",
        "sock",
    )

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setblocking(False)
        self.buffer = b""
        self.skip = 0
        self.pending = 0
        self.frames = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.closed = False
        #: Bytes on the wire after the handshake (frame headers included, as sent).
        self.received = 0
        #: Of those, the ``server-join``'s (set by ``open``).
        self.joined_bytes = 0

    async def open(self, host: str, port: int, server: str) -> None:
        """Handshake (offering deflate), read the server-list, send connect, read the join."""
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self.sock, (host, port))
        await loop.sock_sendall(self.sock, handshake(host, port))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await loop.sock_recv(self.sock, 65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        self.feed(rest)
        sent = False
        listed = 0
        while self.frames < 2:
            if self.frames >= 1 and not sent:
                listed = self.received  # the server-list; nothing else comes before connect
                await loop.sock_sendall(self.sock, connect_message(server))
                sent = True
            if self.skip > BIG:
                await self._discard(loop)
                continue
            chunk = await loop.sock_recv(self.sock, 1 << 20)
            if not chunk:
                raise ConnectionError("closed before joining")
            self.feed(chunk)
        self.joined_bytes = self.received - listed

    async def _discard(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drop the rest of a big payload in the kernel (``MSG_TRUNC``): a 1 MB join would
        otherwise cost the client a copy into user space, and the client must stay cheap."""
        try:
            dropped = len(self.sock.recv(self.skip, socket.MSG_TRUNC))
        except BlockingIOError:
            ready = loop.create_future()
            loop.add_reader(self.sock.fileno(), lambda: ready.done() or ready.set_result(None))
            try:
                await ready
            finally:
                loop.remove_reader(self.sock.fileno())
            return
        if not dropped:
            raise ConnectionError("closed before joining")
        self.received += dropped
        self.skip -= dropped
        if not self.skip:
            self.frames += self.pending
            self.pending = 0

    def poll(self) -> None:
        """Count whatever has arrived, without waiting."""
        while not self.closed:
            try:
                chunk = self.sock.recv(1 << 18)
            except BlockingIOError:
                return
            except OSError:
                self.closed = True
                return
            if not chunk:
                self.closed = True
                return
            self.feed(chunk)

    def feed(self, data: bytes) -> None:
        """Walk frame headers, skipping payloads; answer pings so the server keeps us."""
        self.received += len(data)
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
            final_data = first & 0x80 and opcode in (0x0, 0x1, 0x2)
            end = position + header + length
            if end > size:
                if opcode == 0x9:
                    break  # keep a partial ping whole in the buffer
                self.skip = end - size
                self.pending = 1 if final_data else 0
                position = size
                break
            if opcode == 0x9:
                with contextlib.suppress(OSError):
                    self.sock.send(masked_frame(0xA, data[position + header : end]))
            elif final_data:
                frames += 1
            position = end
        if position < size:
            self.buffer = data[position:]
        if frames:
            now = time.monotonic()
            if not self.frames:
                self.first_at = now
            self.frames += frames
            self.last_at = now

    def close(self) -> None:
        self.closed = True
        self.sock.close()


async def open_drain(host: str, port: int, server: str) -> Drain:
    """A drain client that has joined ``server``; raises if it could not."""
    drain = Drain()
    try:
        await drain.open(host, port, server)
    except BaseException:
        drain.close()
        raise
    return drain


async def open_drains(host: str, port: int, server: str, count: int, parallel: int) -> list[Drain]:
    """``count`` joined drain clients, at most ``parallel`` handshakes in flight."""
    gate = asyncio.Semaphore(parallel)

    async def one() -> Drain:
        async with gate:
            return await open_drain(host, port, server)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def sweep(drains: list[Drain], chunk: int = 100) -> None:
    """Poll every drain once, yielding to the event loop between chunks (samplers stay live)."""
    for start in range(0, len(drains), chunk):
        for drain in drains[start : start + chunk]:
            drain.poll()
        await asyncio.sleep(0)


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
        with contextlib.suppress(ConnectionClosed):
            await self._receive()

    async def _receive(self) -> None:
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
