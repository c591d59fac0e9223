"""The fan-out path: frames queued per loop turn, written straight to transports, in order.

Everything goes through a real server and real WebSocket clients: the direct transport
writes bypass ``websockets``' framing, so only a real client decoding real frames shows that
the bytes on the wire are right.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
import websockets

from dback_core.plugin.events import ClientIdUpdate, Presence
from dback_core.plugin.hookspecs import hookimpl
from dback_core.testing import Client, running_server
from dback_core.wire import protocol
from dback_core.wire.fanout import Viewer, text_frame
from dback_core.world.directory import JOIN_CACHE_SIZE, Guild
from dback_core.world.records import ServerInfo

GUILD = "1"


class World:
    @hookimpl
    def get_server_data(self):
        return {GUILD: {"id": "one", "name": "One", "default": True}}

    @hookimpl
    def get_user_data(self, server_id):
        return {"7": {"uid": "7", "username": "seven", "status": "online", "roleColor": "#ffffff"}}


QUIET = {"DBACK_PLUGINS": ""}


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_text_frame_uses_the_shortest_length_encoding(size):
    frame = text_frame(b"a" * size)
    assert frame[0] == 0x81  # FIN, text, never masked from a server
    header = 2 if size < 126 else 4 if size < 65536 else 10
    assert len(frame) == header + size
    if size >= 126:
        assert frame[1] == (126 if size < 65536 else 127)
        assert int.from_bytes(frame[2:header], "big") == size


def test_viewers_are_slotted():
    """One Viewer per idle connection: no per-instance dict."""
    assert not hasattr(Viewer(object()), "__dict__")  # type: ignore[arg-type]


async def test_a_burst_in_one_loop_turn_arrives_complete_and_in_order():
    async with running_server([("world", World())], environ=QUIET) as server:
        async with Client(server) as client:
            await client.join("one")
            texts = [f"message {number}" for number in range(50)]
            for text in texts:  # no await between them: one loop turn, one write per viewer
                server.fanout.broadcast(GUILD, protocol.message(GUILD, "7", text, "c"))
            received = [(await client.recv_type("message"))["data"]["message"] for _ in texts]
            assert received == texts


async def test_large_frames_use_extended_lengths_on_the_wire():
    big = "é" * 40000  # 80,000 bytes of UTF-8: the 8-byte length form
    medium = "m" * 300  # the 2-byte length form
    async with running_server([("world", World())], environ=QUIET) as server:
        async with Client(server, max_size=None) as client:
            await client.join("one")
            # Straight to the fan-out: a chat message this long would be cut to its limit.
            server.fanout.broadcast(GUILD, protocol.message(GUILD, "7", big, "c"))
            server.fanout.broadcast(GUILD, protocol.message(GUILD, "7", medium, "c"))
            assert (await client.recv_type("message"))["data"]["message"] == big
            assert (await client.recv_type("message"))["data"]["message"] == medium


async def test_a_frame_sent_to_one_viewer_never_overtakes_queued_broadcasts():
    async with running_server([("world", World())], environ=QUIET) as server:
        async with Client(server) as client:
            await client.join("one")
            (connection,) = server.connections
            server.fanout.broadcast(GUILD, protocol.message(GUILD, "7", "first", "c"))
            await server.sessions.send(connection, protocol.error("second"))
            first = await client.recv()
            second = await client.recv()
            assert first["type"] == "message" and first["data"]["message"] == "first"
            assert second == {"type": "error", "data": {"message": "second"}}


async def test_compressed_and_plain_viewers_both_get_every_broadcast():
    async with running_server([("world", World())], environ=QUIET, compression="deflate") as s:
        async with (
            Client(s, compression="deflate") as deflated,
            Client(s, compression=None) as plain,
        ):
            await deflated.join("one")
            await plain.join("one")
            extensions = {c: bool(c.protocol.extensions) for c in s.connections}
            assert sorted(extensions.values()) == [False, True]
            statuses = ["idle", "dnd", "online", "idle"]
            for status in statuses:
                await s.publish(Presence(GUILD, "7", status))
            for client in (deflated, plain):
                got = [(await client.recv_type("presence"))["data"]["status"] for _ in statuses]
                assert got == statuses


async def test_closed_viewers_are_skipped_and_the_rest_still_receive():
    async with running_server([("world", World())], environ=QUIET) as server:
        async with Client(server) as staying:
            await staying.join("one")
            leaving = Client(server)
            await leaving.__aenter__()
            await leaving.join("one")
            await leaving.__aexit__(None, None, None)
            await server.publish(Presence(GUILD, "7", "dnd"))
            assert (await staying.recv_type("presence"))["data"]["status"] == "dnd"


async def test_handshake_headers_are_dropped_once_the_viewer_is_registered():
    """They are a quarter of an idle connection's memory and nothing reads them later."""
    async with running_server([("world", World())], environ=QUIET) as server:
        host, port = server.address
        async with websockets.connect(
            f"ws://{host}:{port}", additional_headers={"X-Padding": "p" * 2000}
        ) as raw:
            json.loads(await raw.recv())
            (connection,) = server.connections
            assert len(connection.request.headers) == 0
            assert len(connection.response.headers) == 0
            await raw.send(json.dumps({"type": "connect", "data": {"server": "one"}}))
            assert json.loads(await raw.recv())["type"] == "server-join"


async def test_broadcast_returns_how_many_viewers_it_was_queued_for():
    async with running_server([("world", World())], environ=QUIET) as server:
        async with Client(server) as one, Client(server) as two:
            await one.join("one")
            await two.join("one")
            assert server.fanout.broadcast(GUILD, protocol.refresh_data(GUILD)) == 2
            assert server.fanout.broadcast("elsewhere", protocol.refresh_data(GUILD)) == 0
            await asyncio.wait_for(one.recv_type("refresh_data"), 5)
            await asyncio.wait_for(two.recv_type("refresh_data"), 5)


async def test_joins_are_served_from_one_cached_encoding_per_requested_name():
    async with running_server([("world", World())], environ=QUIET) as server:
        async with Client(server) as first, Client(server) as second:
            assert (await first.join("one"))["data"]["users"]["7"]["status"] == "online"
            guild = server.directory.guilds[GUILD]
            cached = guild.join_frame("one")
            assert guild.join_frame("one") is cached
            assert json.loads(guild.join_frame("default"))["data"]["request"] == {
                "server": "default"
            }
            await server.publish(Presence(GUILD, "7", "dnd"))
            assert guild.join_frame("one") is not cached
            assert (await second.join("one"))["data"]["users"]["7"]["status"] == "dnd"


async def test_a_cached_join_follows_client_id_and_name_changes():
    async with running_server([("world", World())], environ=QUIET) as server:
        async with Client(server) as client:
            await client.join("one")
            guild = server.directory.guilds[GUILD]
            before = guild.join_frame("one")
            await server.publish(ClientIdUpdate(GUILD, "4242"))
            assert json.loads(guild.join_frame("one"))["data"]["clientId"] == "4242"
            guild.info = dataclasses.replace(guild.info, name="Renamed")
            assert json.loads(guild.join_frame("one"))["data"]["serverName"] == "Renamed"
            assert guild.join_frame("one") != before


def test_the_join_cache_is_bounded():
    guild = Guild(
        info=ServerInfo(
            GUILD, "one", "One", passworded=False, default=True, password=None, plugin="t"
        ),
        users={},
        owner=None,
        client_id=None,
    )
    for number in range(JOIN_CACHE_SIZE * 3):
        guild.join_frame(f"name-{number}")
    assert len(guild._joins) <= JOIN_CACHE_SIZE
