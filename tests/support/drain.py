"""Cheap WebSocket clients for load tests: they handshake, join, then only count bytes.

Parsing every frame in Python - or even waking a task per socket per frame - would make the
test clients the bottleneck. A drain client reads its first two frames properly; afterwards
one ``DrainPool`` task polls every socket without blocking and counts bytes, which the test
compares with the exact size of the frames the server was asked to broadcast.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import Iterable


def frame_size(payload: bytes) -> int:
    """Bytes on the wire for an unmasked server text frame carrying ``payload``."""
    length = len(payload)
    return length + (2 if length < 126 else 4 if length < 65536 else 10)


def masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    length = len(payload)
    if length < 126:
        header = bytes([0x81, 0x80 | length])
    else:
        header = bytes([0x81, 0x80 | 126]) + length.to_bytes(2, "big")
    return header + mask + masked


class DrainClient:
    def __init__(self, host: str, port: int, receive_buffer: int | None = None) -> None:
        self.host = host
        self.port = port
        self.sock = socket.socket()
        if receive_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.setblocking(False)
        self.buffer = b""
        self.received = 0
        self.closed = False

    async def _fill(self, size: int) -> None:
        loop = asyncio.get_running_loop()
        while len(self.buffer) < size:
            chunk = await loop.sock_recv(self.sock, 1 << 16)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buffer += chunk

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self.sock, (self.host, self.port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET / HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(self.sock, request.encode())
        while b"\r\n\r\n" not in self.buffer:
            await self._fill(len(self.buffer) + 1)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.decode(errors="replace"))

    async def read_frame(self) -> dict:
        await self._fill(2)
        length, offset = self.buffer[1] & 0x7F, 2
        if length == 126:
            await self._fill(4)
            length, offset = int.from_bytes(self.buffer[2:4], "big"), 4
        elif length == 127:
            await self._fill(10)
            length, offset = int.from_bytes(self.buffer[2:10], "big"), 10
        await self._fill(offset + length)
        payload = self.buffer[offset : offset + length]
        self.buffer = self.buffer[offset + length :]
        return json.loads(payload)

    async def join(self, server: str = "default") -> dict:
        """Read server-list, send connect, return the server-join."""
        await self.read_frame()
        message = json.dumps({"type": "connect", "data": {"server": server}})
        await asyncio.get_running_loop().sock_sendall(self.sock, masked_text_frame(message))
        join = await self.read_frame()
        self.received = len(self.buffer)
        self.buffer = b""
        return join

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
            self.received += len(chunk)

    def close(self) -> None:
        self.sock.close()


async def drain_all(clients: Iterable[DrainClient], expected: int, interval: float = 0.02) -> None:
    """Poll ``clients`` until each has received ``expected`` bytes; fail if one is closed."""
    pending = list(clients)
    while pending:
        for client in pending:
            client.poll()
        closed = [client for client in pending if client.closed and client.received < expected]
        if closed:
            raise ConnectionError(
                f"{len(closed)} clients closed early, one after {closed[0].received} of "
                f"{expected} bytes"
            )
        pending = [client for client in pending if client.received < expected]
        await asyncio.sleep(interval)
