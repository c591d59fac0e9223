"""Hostile input, failing plugins, slow and vanished clients, limits: the server carries on."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from dback_core import hookimpl
from dback_core.loading.plugins import load_plugins
from dback_core.plugin.events import Message, Presence
from dback_core.plugin.server_settings import Settings
from dback_core.serving.server import DbackServer
from dback_core.testing import Client, running_server
from dback_core.wire import protocol
from tests.support.drain import DrainClient, drain_all, frame_size

DEFAULT = "232769614004748288"

BAD_FRAMES = [
    ("not json", "{nope"),
    ("array", "[1, 2, 3]"),
    ("number", "42"),
    ("string", '"connect"'),
    ("null", "null"),
    ("no type", '{"data": {}}'),
    ("unknown type", '{"type": "explode"}'),
    ("type not a string", '{"type": ["connect"]}'),
    ("data a list", '{"type": "connect", "data": []}'),
    ("server an object", '{"type": "connect", "data": {"server": {"a": 1}}}'),
    ("server a bool", '{"type": "connect", "data": {"server": true}}'),
    ("password a number", '{"type": "connect", "data": {"server": "oauth", "password": 7}}'),
    ("user a string", '{"type": "connect", "data": {"server": "oauth", "discordUser": "x"}}'),
    ("serverId missing", '{"type": "get_user_data"}'),
    ("serverId an object", '{"type": "get_user_data", "serverId": {}}'),
    ("deeply nested", "[" * 2000 + "]" * 2000),
    ("invalid utf-8 escape", '{"type": "connect", "data": {"server": "\\ud800"}}'),
]


@pytest.mark.parametrize(
    "frame", [frame for _, frame in BAD_FRAMES], ids=[n for n, _ in BAD_FRAMES]
)
async def test_a_bad_frame_gets_an_error_and_the_connection_carries_on(mock_server, frame):
    async with Client(mock_server) as client:
        await client.send(frame)
        answer = await client.recv_type("error")
        join = await client.join("default")
    assert isinstance(answer["data"]["message"], str) and answer["data"]["message"]
    assert join["type"] == "server-join"


async def test_a_binary_frame_that_is_not_utf8_gets_an_error(mock_server):
    async with Client(mock_server) as client:
        await client.send(b"\xff\xfe\x00connect")
        answer = await client.recv_type("error")
        assert "UTF-8" in answer["data"]["message"]
        assert (await client.join())["type"] == "server-join"


async def test_a_connect_in_a_binary_frame_is_served_like_text(mock_server):
    """Browser builds of d-zone send ``connect`` as a Buffer, which is a binary frame."""
    async with Client(mock_server) as client:
        await client.send(json.dumps({"type": "connect", "data": {"server": None}}).encode())
        join = await client.recv_type("server-join", "error")
        await client.send(b"[1, 2]")
        shape = await client.recv_type("error")
    assert join["type"] == "server-join" and join["data"]["request"] == {"server": "dworld"}
    assert "object" in shape["data"]["message"]


async def test_an_oversized_frame_closes_with_1009_and_others_carry_on(mock_server):
    async with Client(mock_server) as watcher, Client(mock_server) as offender:
        await watcher.join("default")
        await offender.send(json.dumps({"type": "connect", "data": {"server": "x" * 10_000}}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await offender.recv()
        assert closed.value.rcvd.code == 1009
        assert (await watcher.recv_type("presence"))["server"] == DEFAULT


async def test_a_flood_is_cut_off_with_1008_and_others_carry_on(mock_server):
    async with Client(mock_server) as watcher, Client(mock_server) as flooder:
        await watcher.join("default")
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(500):
                await flooder.send('{"type": "connect", "data": {"server": "docs"}}')
            while True:
                await flooder.recv()
        assert closed.value.rcvd.code == 1008
        assert (await watcher.recv_type("presence"))["server"] == DEFAULT


async def test_connections_per_address_are_limited():
    async with running_server(max_connections_per_address=3) as server:
        clients = [Client(server) for _ in range(3)]
        for client in clients:
            await client.__aenter__()
        with pytest.raises(InvalidStatus) as refused:
            await Client(server).__aenter__()
        assert refused.value.response.status_code == 429
        await clients[0].__aexit__(None, None, None)
        await asyncio.sleep(0.1)
        async with Client(server) as again:
            assert again.server_list
        for client in clients[1:]:
            await client.__aexit__(None, None, None)


async def test_total_connections_are_limited():
    async with running_server(max_connections=2) as server:
        async with Client(server), Client(server):
            with pytest.raises(InvalidStatus) as refused:
                await Client(server).__aenter__()
    assert refused.value.response.status_code == 503


async def test_a_handshake_that_never_finishes_is_dropped():
    async with running_server(open_timeout=0.3) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        await asyncio.wait_for(reader.read(), 5)
        assert reader.at_eof()
        writer.close()


async def test_origins_outside_the_allow_list_are_refused():
    async with running_server(allowed_origins="https://dzone.example") as server:
        host, port = server.address
        url = f"ws://{host}:{port}"
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(url, origin="https://evil.example")
        assert refused.value.response.status_code == 403
        async with websockets.connect(url, origin="https://dzone.example") as allowed:
            assert json.loads(await allowed.recv())["type"] == "server-list"
        async with websockets.connect(url) as no_origin:
            assert json.loads(await no_origin.recv())["type"] == "server-list"


class Servers:
    @hookimpl
    def get_server_data(self):
        return {"1": {"id": "one", "name": "One"}, "2": {"id": "two", "name": "Two"}}


class Crowd:
    """One guild of 40 members and no event source, so tests know every frame sent."""

    @hookimpl
    def get_server_data(self):
        return {"1": {"id": "one", "name": "One"}}

    @hookimpl
    def get_user_data(self, server_id):
        return {
            str(n): {"uid": str(n), "username": f"m{n}", "status": "online", "roleColor": False}
            for n in range(40)
        }


QUIET = {"DBACK_PLUGINS": ""}


class Hanging:
    @hookimpl
    async def get_user_data(self, server_id):
        await asyncio.sleep(3600)


class Backup:
    @hookimpl
    def get_user_data(self, server_id):
        return {"9": {"uid": "9", "username": "backup", "status": "online", "roleColor": False}}


async def test_a_hanging_provider_times_out_and_the_next_one_serves(caplog):
    plugins = [("servers", Servers()), ("hanging", Hanging()), ("backup", Backup())]
    with caplog.at_level(logging.WARNING):
        async with running_server(
            plugins, environ={"DBACK_PLUGINS": ""}, provider_timeout=0.2
        ) as s:
            async with Client(s) as client:
                join = await client.join("one")
    assert set(join["data"]["users"]) == {"9"}
    assert "hanging" in caplog.text and "longer than" in caplog.text


@pytest.mark.slow
async def test_a_crashing_event_source_is_restarted():
    class Crashing:
        def __init__(self):
            self.starts = 0

        @hookimpl
        def event_sources(self):
            return [self.stream]

        async def stream(self):
            self.starts += 1
            yield Presence("1", "9", "idle")
            raise RuntimeError("lost the feed")

    crashing = Crashing()
    plugins = [("servers", Servers()), ("backup", Backup()), ("crashing", crashing)]
    async with running_server(plugins, environ={"DBACK_PLUGINS": ""}) as server:
        server.sources.initial_backoff = 0.01
        for _ in range(200):
            if crashing.starts >= 3:
                break
            await asyncio.sleep(0.02)
    assert crashing.starts >= 3


async def test_a_failing_startup_hook_does_not_stop_the_server(caplog):
    class BadStart:
        @hookimpl
        def startup(self):
            raise ConnectionError("cannot reach the database")

    plugins = [("servers", Servers()), ("backup", Backup()), ("bad-start", BadStart())]
    with caplog.at_level(logging.ERROR):
        async with running_server(plugins, environ={"DBACK_PLUGINS": ""}) as server:
            async with Client(server) as client:
                assert (await client.join("one"))["type"] == "server-join"
    assert "bad-start" in caplog.text


@pytest.mark.slow
async def test_a_client_that_stops_reading_is_cut_off_and_costs_others_nothing():
    """A never-reading client fills its own buffer, is disconnected; the others get it all."""
    big = "x" * 1000
    async with running_server(
        [("crowd", Crowd())], environ=QUIET, max_client_buffer=128 * 1024
    ) as server:
        host, port = server.address
        watchers = [DrainClient(host, port) for _ in range(20)]
        silent = DrainClient(host, port, receive_buffer=4096)
        for client in [*watchers, silent]:
            await client.open()
            await client.join("default")
        uid = next(iter(server.directory.guilds["1"].users))
        texts = [f"{number}{big}" for number in range(3000)]
        expected = sum(frame_size(protocol.message("1", uid, text, "c")) for text in texts)
        drains = asyncio.ensure_future(drain_all(watchers, expected))
        for number, text in enumerate(texts):
            await server.publish(Message("1", uid, text, "c"))
            if number % 10 == 0:
                await asyncio.sleep(0.005)
        await asyncio.wait_for(drains, 60)
        assert server.fanout.slow_disconnects == 1
        assert all(w.received >= expected for w in watchers)
        for client in [*watchers, silent]:
            client.close()


@pytest.mark.slow
async def test_a_thousand_watchers_get_every_event_despite_a_silent_one():
    async with running_server(
        [("crowd", Crowd())],
        environ=QUIET,
        max_client_buffer=256 * 1024,
        max_connections_per_address=2000,
        ping_interval=3600,
    ) as s:
        host, port = s.address
        watchers = [DrainClient(host, port) for _ in range(1000)]
        silent = DrainClient(host, port, receive_buffer=4096)
        for batch in range(0, len(watchers), 100):
            await asyncio.gather(*(w.open() for w in watchers[batch : batch + 100]))
            await asyncio.gather(*(w.join("default") for w in watchers[batch : batch + 100]))
        await silent.open()
        await silent.join("default")
        guild = {uid: dict(user) for uid, user in s.directory.guilds["1"].users.items()}
        statuses = ["online", "idle", "dnd", "offline"]
        events = []
        for number in range(2000):
            user = guild[list(guild)[number % len(guild)]]
            user["status"] = statuses[(statuses.index(user["status"]) + 1) % 4]
            events.append(Presence("1", user["uid"], user["status"]))
        expected = sum(
            frame_size(protocol.presence("1", guild[e.uid] | {"status": e.status})) for e in events
        )
        drains = asyncio.ensure_future(drain_all(watchers, expected))
        for number, event in enumerate(events):
            await s.publish(event)
            if number % 20 == 0:
                await asyncio.sleep(0)  # let the watchers' poller and the sockets breathe
        await asyncio.wait_for(drains, 120)
        assert all(w.received == expected for w in watchers)
        assert s.fanout.slow_disconnects <= 1
        for client in [*watchers, silent]:
            client.close()


async def test_no_password_or_token_is_logged_sent_or_echoed(monkeypatch, caplog):
    class Refusing:
        @hookimpl
        def authorize(self, server_id, credentials):
            return credentials.get("discordToken") == "good-token-123"

    monkeypatch.setenv("DBACK_MOCK_PASSWORD", "hunter2-secret")
    with caplog.at_level(logging.DEBUG):
        async with running_server([("auth", Refusing())]) as server, Client(server) as client:
            frames = [client.server_list]
            frames.append(await client.join("oauth", password="wrong-pass-456"))
            frames.append(await client.join("oauth", discordToken="bad-token-789"))
            frames.append(
                await client.join("oauth", discordToken="good-token-123", discordUser={"id": "1"})
            )
            frames.append(await client.join("oauth", password="hunter2-secret"))
    assert frames[-2]["type"] == "server-join" and frames[-1]["type"] == "server-join"
    server_logs = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("dback"))
    seen = json.dumps(frames) + server_logs
    for secret in ("hunter2-secret", "wrong-pass-456", "bad-token-789", "good-token-123"):
        assert secret not in seen


@pytest.mark.slow
async def test_stop_does_not_wait_for_a_client_that_stopped_reading():
    """A silent client whose backlog is under max_client_buffer (so it was not cut off) can
    not take a close frame; stopping aborts it instead of waiting for it."""
    plugins = load_plugins(environ=QUIET, in_process=[("crowd", Crowd())])
    server = DbackServer(plugins, Settings(host="127.0.0.1", port=0, ping_interval=3600))
    await server.start()
    host, port = server.address
    silent = DrainClient(host, port, receive_buffer=4096)
    try:
        await silent.open()
        await silent.join("default")
        uid = next(iter(server.directory.guilds["1"].users))
        connection = next(iter(server.fanout.viewers))
        # Past what the kernel holds, until the server's own buffer pauses the writes.
        while connection.transport.get_write_buffer_size() < 256 * 1024:
            server.fanout.broadcast("1", protocol.message("1", uid, "x" * 60000, "c"))
            await asyncio.sleep(0.01)
        await asyncio.wait_for(server.stop(), 30)
        assert server.fanout.slow_disconnects == 0
    finally:
        silent.close()
