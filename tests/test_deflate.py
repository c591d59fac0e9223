"""permessage-deflate with real ``websockets`` clients over real sockets.

The client's own permessage-deflate decoder keeps its window from message to message, as a
browser's does, so a shared stream that went wrong shows up as a failed or wrong message.
"""

from __future__ import annotations

import json
import zlib

import pytest
from websockets.exceptions import ConnectionClosedError, PayloadTooBig
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode

from dback_core.plugin.events import Presence
from dback_core.plugin.hookspecs import hookimpl
from dback_core.plugin.server_settings import Settings
from dback_core.testing import Client, running_server
from dback_core.wire import fanout as fanout_module
from dback_core.wire import protocol
from dback_core.wire.deflate import SharedDeflate

GUILD = "1"
MEMBERS = 300
QUIET = {"DBACK_PLUGINS": ""}


class World:
    """Two guilds; the default one has ``members`` members, all online."""

    def __init__(self, members: int = MEMBERS) -> None:
        self.members = members

    @hookimpl
    def get_server_data(self):
        return {
            GUILD: {"id": "one", "name": "One", "default": True},
            "2": {"id": "two", "name": "Two"},
        }

    @hookimpl
    def get_user_data(self, server_id):
        return {
            str(n): {"uid": str(n), "username": f"member-{n}", "status": "online"}
            for n in range(self.members)
        }


def offer(**parameters) -> list[ClientPerMessageDeflateFactory]:
    return [ClientPerMessageDeflateFactory(**parameters)]


async def presences(server, count: int, start: int = 0) -> list[str]:
    statuses = []
    for number in range(start, start + count):
        status = ["idle", "dnd"][number % 2]  # every member starts online: each is a change
        await server.publish(Presence(GUILD, str(number % MEMBERS), status))
        statuses.append(f"{number % MEMBERS}:{status}")
    return statuses


async def received(client: Client, count: int) -> list[str]:
    frames = [await client.recv_type("presence") for _ in range(count)]
    return [f"{frame['data']['uid']}:{frame['data']['status']}" for frame in frames]


async def test_deflate_is_negotiated_by_default_asking_for_client_no_context_takeover():
    async with running_server([("world", World())], environ=QUIET) as server:
        async with Client(server) as client:
            answer = client.connection.response.headers["Sec-WebSocket-Extensions"]
            assert answer == "permessage-deflate; client_no_context_takeover"
            world = await client.join("one")
            assert len(world["data"]["users"]) == MEMBERS
            (viewer,) = server.fanout.viewers.values()
            assert viewer.deflate is not None and viewer.deflate.history


async def test_late_joiners_and_resets_keep_every_stream_readable(monkeypatch):
    """Viewers join between broadcasts, get joins of their own, and are admitted to the
    shared stream by resets; each reads every presence of its guild, in order."""
    monkeypatch.setattr(fanout_module, "SYNC_INTERVAL", 0.0)
    async with running_server([("world", World())], environ=QUIET) as server:
        async with Client(server) as early, Client(server) as late, Client(server) as other:
            await early.join("one")
            first = await presences(server, 30)
            await late.join("one")
            await other.join("two")
            second = await presences(server, 30, start=30)
            assert await received(early, 60) == first + second
            await early.join("one")  # a join of its own in the middle of the stream
            third = await presences(server, 30, start=60)
            assert await received(early, 30) == third
            assert await received(late, 60) == second + third
            stream = server.fanout.streams[GUILD]
            assert len(stream.synced) == 2  # both share the guild's stream by now
            await other.send({"type": "connect", "data": {"server": "one"}})
            assert (await other.recv_type("server-join"))["data"]["serverName"] == "One"


async def test_a_refresh_sends_compressed_worlds_and_the_stream_goes_on(monkeypatch):
    monkeypatch.setattr(fanout_module, "SYNC_INTERVAL", 0.0)
    async with running_server([("world", World())], environ=QUIET) as server:
        async with Client(server) as client:
            await client.join("one")
            before = await presences(server, 10)
            await server.refresh(GUILD)
            after = await presences(server, 10, start=10)
            assert await received(client, 10) == before
            assert len((await client.recv_type("server-join"))["data"]["users"]) == MEMBERS
            assert await received(client, 10) == after


async def test_clients_that_do_not_offer_deflate_get_plain_frames():
    async with running_server([("world", World())], environ=QUIET) as server:
        async with Client(server, compression=None) as plain, Client(server) as deflated:
            assert "Sec-WebSocket-Extensions" not in plain.connection.response.headers
            await plain.join("one")
            await deflated.join("one")
            sent = await presences(server, 20)
            assert await received(plain, 20) == sent
            assert await received(deflated, 20) == sent


@pytest.mark.parametrize(
    ("parameters", "answer"),
    [
        (
            {"server_no_context_takeover": True},
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        ({"client_no_context_takeover": True}, "permessage-deflate; client_no_context_takeover"),
        ({"client_max_window_bits": 9}, "permessage-deflate; client_no_context_takeover"),
        (
            {"server_max_window_bits": 15},
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=15",
        ),
        (
            {"server_max_window_bits": 12},
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=12",
        ),
        ({"server_max_window_bits": 11}, None),  # declined: dback's output may look 4 KiB back
    ],
)
async def test_offers_with_some_parameters_keep_working(parameters, answer):
    async with running_server([("world", World())], environ=QUIET) as server:
        async with Client(server, extensions=offer(**parameters), compression=None) as client:
            assert client.connection.response.headers.get("Sec-WebSocket-Extensions") == answer
            world = await client.join("one")
            assert len(world["data"]["users"]) == MEMBERS
            sent = await presences(server, 20)
            assert await received(client, 20) == sent
            await client.join("one")  # compressed from the client, inflated by the server
            assert await received(client, 0) == []
            sent = await presences(server, 5, start=20)
            assert await received(client, 5) == sent


async def test_with_compression_none_the_offer_is_declined():
    async with running_server([("world", World())], environ=QUIET, compression="none") as server:
        async with Client(server) as client:
            assert "Sec-WebSocket-Extensions" not in client.connection.response.headers
            assert len((await client.join("one"))["data"]["users"]) == MEMBERS


async def test_a_compressed_message_inflating_past_max_frame_size_closes_with_1009():
    """The limit is on the inflated size: a small compressed frame cannot smuggle more."""
    message = json.dumps({"type": "connect", "data": {"server": "one" + " " * 20_000}})
    assert len(zlib.compress(message.encode())) < 4096
    async with running_server([("world", World())], environ=QUIET) as server:
        async with Client(server) as client:
            await client.send(message)
            with pytest.raises(ConnectionClosedError) as closed:
                await client.recv()
            assert closed.value.rcvd.code == 1009


async def test_small_frames_for_one_viewer_go_uncompressed_and_keep_it_in_the_stream(
    monkeypatch,
):
    monkeypatch.setattr(fanout_module, "SYNC_INTERVAL", 3600.0)
    async with running_server([("world", World())], environ=QUIET) as server:
        async with Client(server) as client:
            await client.join("one")
            await presences(server, 3)
            await received(client, 3)
            stream = server.fanout.streams[GUILD]
            assert len(stream.synced) == 1
            await client.send({"type": "nonsense"})
            error = await client.recv_type("error")
            assert len(protocol.error(error["data"]["message"])) < 512
            assert len(stream.synced) == 1
            sent = await presences(server, 5, start=3)
            assert await received(client, 5) == sent


def client_deflated(payload: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


@pytest.mark.parametrize("size", [4095, 4096, 4097, 100_000])
def test_inflating_stops_at_the_limit_whatever_the_ratio(size):
    """Highly compressible input (a frame of a few bytes inflating to 100 KB): exact limit."""
    frame = Frame(Opcode.TEXT, client_deflated(b"a" * size), rsv1=True)
    extension = SharedDeflate(history=True)
    if size <= 4096:
        assert extension.decode(frame, max_size=4096).data == b"a" * size
    else:
        with pytest.raises(PayloadTooBig):
            extension.decode(frame, max_size=4096)


def test_a_fragmented_compressed_message_is_inflated_across_its_frames():
    deflated = client_deflated(b'{"type": "connect", "data": {"server": "one"}}')
    extension = SharedDeflate(history=True)
    first = extension.decode(Frame(Opcode.TEXT, deflated[:10], fin=False, rsv1=True))
    rest = extension.decode(Frame(Opcode.CONT, deflated[10:]))
    assert first.data + rest.data == b'{"type": "connect", "data": {"server": "one"}}'
    assert not first.rsv1
    plain = Frame(Opcode.TEXT, b"not compressed")
    assert extension.decode(plain) is plain


def test_compression_defaults_to_deflate_and_accepts_only_its_two_values():
    assert Settings.from_env({}).compression == "deflate"
    assert Settings.from_env({"DBACK_COMPRESSION": "none"}).compression == "none"
    with pytest.raises(ValueError, match="DBACK_COMPRESSION"):
        Settings.from_env({"DBACK_COMPRESSION": "gzip"})
