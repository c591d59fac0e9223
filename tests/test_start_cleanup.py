"""A start that fails part-way stops what it started; ``DbackServer`` as an async context.

A failed ``start`` used to leave the event sources running (the mock kept simulating in a
process that served nothing) and never told the plugins to shut down, so a plugin holding a
database pool or a Discord login leaked it.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
import websockets

from dback_core import Presence, hookimpl
from dback_core.loading.plugins import load_plugins
from dback_core.plugin.server_settings import Settings
from dback_core.serving.server import DbackServer
from dback_core.testing import Client

GUILD = "900000000000000001"


class Lifecycle:
    """A provider with an event source that records its start, its end and the shutdown."""

    def __init__(self) -> None:
        self.source_started = asyncio.Event()
        self.source_ended = False
        self.shutdowns = 0

    @hookimpl
    def get_server_data(self):
        return {GUILD: {"id": "life", "name": "Life"}}

    @hookimpl
    def get_user_data(self, server_id):
        return {"1": {"uid": "1", "username": "one", "status": "online", "roleColor": "#000"}}

    @hookimpl
    def event_sources(self):
        return [self.changes]

    @hookimpl
    def shutdown(self):
        self.shutdowns += 1

    async def changes(self):
        self.source_started.set()
        try:
            while True:
                await asyncio.sleep(3600)
                yield Presence(GUILD, "1", "idle")
        finally:
            self.source_ended = True


def _server(plugin: Lifecycle, port: int) -> DbackServer:
    plugins = load_plugins(environ={"DBACK_PLUGINS": ""}, in_process=[("life", plugin)])
    return DbackServer(plugins, Settings(host="127.0.0.1", port=port))


def _source_tasks() -> list[asyncio.Task]:
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("dback-source-") and not task.done()
    ]


async def test_a_taken_port_stops_the_sources_and_shuts_the_plugins_down():
    plugin = Lifecycle()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = _server(plugin, taken.getsockname()[1])
        with pytest.raises(OSError):
            await server.start()
    assert plugin.source_started.is_set()  # the source was running when serve() failed
    assert plugin.source_ended
    assert _source_tasks() == []
    assert server.sources.tasks == []
    assert plugin.shutdowns == 1
    assert not server.ready
    await asyncio.wait_for(server.wait_stopped(), 5)
    await server.stop()  # stopping a server whose start failed does nothing more
    assert plugin.shutdowns == 1


async def test_a_cancelled_start_stops_what_it_started():
    plugin = Lifecycle()
    never = asyncio.Event()

    class SlowList:
        @hookimpl
        async def get_server_data(self):
            await never.wait()

    plugins = load_plugins(
        environ={"DBACK_PLUGINS": ""}, in_process=[("life", plugin), ("slow", SlowList())]
    )
    server = DbackServer(plugins, Settings(host="127.0.0.1", port=0, provider_timeout=60))
    starting = asyncio.create_task(server.start())
    await asyncio.sleep(0.1)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert plugin.shutdowns == 1
    assert _source_tasks() == []


async def test_async_with_serves_inside_and_stops_on_leaving():
    plugin = Lifecycle()
    async with _server(plugin, 0) as server:
        assert server.ready
        async with Client(server) as client:
            assert GUILD in client.server_list
        host, port = server.address
    assert plugin.shutdowns == 1
    assert plugin.source_ended
    assert not server.ready
    with pytest.raises(OSError):
        await websockets.connect(f"ws://{host}:{port}", open_timeout=5)


async def test_async_with_stops_the_server_when_the_body_raises():
    plugin = Lifecycle()
    with pytest.raises(RuntimeError, match="body failed"):
        async with _server(plugin, 0):
            raise RuntimeError("body failed")
    assert plugin.shutdowns == 1
    assert _source_tasks() == []
