"""A client cannot make the server work or hold memory much beyond what it costs the client:
guild switches are rate-limited, big joins are compressed once per guild version (off the
event loop) whatever the number of guilds, and a viewer that stops reading is cut, with
compression on as without it."""

from __future__ import annotations

import asyncio
import base64
import os
import socket

import pytest

from dback_core import hookimpl
from dback_core.testing import Client, running_server
from dback_core.wire import protocol

QUIET = {"DBACK_PLUGINS": ""}


class BigGuilds:
    """``count`` guilds ``g0``... of 600 members each (joins of ~60 KB)."""

    def __init__(self, count: int) -> None:
        self.count = count

    @hookimpl
    def get_server_data(self):
        servers = {str(100 + n): {"id": f"g{n}", "name": f"Guild {n}"} for n in range(self.count)}
        servers["100"]["default"] = True
        return servers

    @hookimpl
    def get_user_data(self, server_id):
        return {
            f"{server_id}{n:04d}": {
                "uid": f"{server_id}{n:04d}",
                "username": f"member {n} of {server_id}",
                "status": ("online", "idle", "dnd")[n % 3],
                "roleColor": "#5865f2",
            }
            for n in range(600)
        }


async def test_connects_past_the_switch_rate_get_an_error_and_change_nothing():
    async with running_server(
        [("big", BigGuilds(4))], environ=QUIET, switch_rate=0.01, switch_burst=2
    ) as server:
        async with Client(server, compression="deflate") as client:
            assert (await client.join("g0"))["type"] == "server-join"
            assert (await client.join("g1"))["type"] == "server-join"
            refused = await client.join("g2")
            assert refused == {"type": "error", "data": {"message": protocol.SWITCHING_TOO_FAST}}
            # Still in g1, and still served: its member list comes, nothing of g2 does.
            answer = await client.pending("g1")
            assert answer == []
            viewer = next(iter(server.fanout.viewers.values()))
            assert viewer.requested == "g1"
            async with Client(server) as other:  # the rate is per connection
                assert (await other.join("g2"))["type"] == "server-join"


async def test_joins_of_more_guilds_than_the_cache_holds_inflate_to_the_exact_frame():
    """Twelve big guilds, a cache for about two: every join inflates to the frame the
    server encoded, and each guild's join is compressed once per version, not per join."""
    async with running_server(
        [("big", BigGuilds(12))],
        environ=QUIET,
        switch_rate=1000,
        switch_burst=1000,
        message_burst=1000,
        join_cache_bytes=150_000,
    ) as server:
        async with Client(server, compression="deflate", max_size=None) as client:
            assert client.connection.protocol.extensions, "compression was negotiated"
            for round_number in range(2):
                for n in range(12):
                    await client.send({"type": "connect", "data": {"server": f"g{n}"}})
                    raw = await asyncio.wait_for(client.connection.recv(), 10)
                    expected = server.directory.guilds[str(100 + n)].join_frame(f"g{n}")
                    assert len(expected) > 50_000
                    assert raw.encode() == expected, (round_number, n)
            joins = server.fanout.joins
            assert joins.size <= 150_000
            assert joins.compressions == 24  # the cache holds two: every switch missed
        async with Client(server, compression="deflate", max_size=None) as client:
            for n in (11, 11, 10, 10):
                await client.send({"type": "connect", "data": {"server": f"g{n}"}})
                raw = await asyncio.wait_for(client.connection.recv(), 10)
                assert raw.encode() == server.directory.guilds[str(100 + n)].join_frame(f"g{n}")
            assert server.fanout.joins.compressions == 24  # both were still cached


async def silent_socket(host: str, port: int, deflate: bool) -> socket.socket:
    """A client that handshakes (offering deflate or not), joins g0, and never reads again."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, (host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
    request = (
        f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{offer}\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)
    assert (b"permessage-deflate" in head) == deflate
    payload = b'{"type":"connect","data":{"server":"g0"}}'
    await loop.sock_sendall(sock, bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
    return sock


@pytest.mark.slow
@pytest.mark.parametrize("compression", ["deflate", "none"])
async def test_a_viewer_that_stops_reading_is_cut_and_the_others_get_everything(compression):
    """The backlog stays far under DBACK_MAX_CLIENT_BUFFER; the lag bound cuts it anyway."""
    async with running_server(
        [("big", BigGuilds(1))],
        environ=QUIET,
        compression=compression,
        max_client_lag=1.0,
        ping_interval=3600,
    ) as server:
        host, port = server.address
        async with Client(server, compression="deflate", max_size=None, timeout=30) as reader:
            await reader.join("g0")
            silent = await silent_socket(host, port, deflate=compression == "deflate")
            try:
                while len(server.fanout.viewers) < 2:
                    await asyncio.sleep(0.01)
                uid = next(iter(server.directory.guilds["100"].users))
                sent = 0
                while server.fanout.slow_disconnects == 0 and sent < 3000:
                    # Random text: it compresses to about half, so the kernel buffers fill.
                    text = os.urandom(1500).hex()
                    server.fanout.broadcast("100", protocol.message("100", uid, text, "c"))
                    sent += 1
                    frame = await reader.recv_type("message")
                    assert frame["data"]["message"] == text
                    await asyncio.sleep(0.002)
                assert server.fanout.slow_disconnects == 1
                for _ in range(500):  # its session ends once the socket is gone
                    if len(server.fanout.viewers) == 1:
                        break
                    await asyncio.sleep(0.01)
                assert len(server.fanout.viewers) == 1  # the reader stays
                text = "after the cut"
                server.fanout.broadcast("100", protocol.message("100", uid, text, "c"))
                assert (await reader.recv_type("message"))["data"]["message"] == text
            finally:
                silent.close()
