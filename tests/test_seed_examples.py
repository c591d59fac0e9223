"""The code examples of d-back's provider guide, run as written against dback.

Each example is kept verbatim in a string and executed; the test then drives the server it
built. Only the port is changed after the example ran (to a free one), so parallel test runs
and a developer's own server on port 3000 do not collide.
"""

from __future__ import annotations

import json
import socket

import websockets

from dback_core.testing import Client

CUSTOM_USER_PROVIDER = """
from typing import Dict, Any
from d_back.server import WebSocketServer
async def get_user_data(server_id: str) -> Dict[str, Any]:
    # Your custom logic to fetch user data
    users = {
        "123456789": {
            "uid": "123456789",
            "username": "Echter Benutzer",
            "status": "online",
            "roleColor": "#5865F2"
        }
    }
    return users
server = WebSocketServer(port=3000, host="localhost")
server.on_get_user_data(get_user_data)
"""

CUSTOM_SERVER_PROVIDER = """
from typing import Dict, Any, Optional
async def get_server_data(server_id: Optional[str] = None) -> Dict[str, Any]:
    servers = {
        "987654321": {
            "id": "987654321",
            "name": "Mein Discord-Server",
            "passworded": False,
            "is_default": True,
            "enabled": True
        }
    }
    if server_id:
        return {server_id: servers.get(server_id, {})}
    return servers
server.on_get_server_data(get_server_data)
"""

REAL_TIME_UPDATES = """
async def on_change(server, server_id, user_id, new_status):
    # When user status changes
    await server.broadcast_presence(server_id, user_id, new_status)
    # When you want to trigger full data refresh
    await server.broadcast_message({
        "type": "refresh_data",
        "serverId": server_id
    })
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_example(*sources: str) -> dict:
    namespace: dict = {}
    for source in sources:
        exec(compile(source, "<seed example>", "exec"), namespace)
    namespace["server"].port = free_port()
    return namespace


async def test_custom_user_provider_serves_its_users_in_the_mock_guilds():
    server = run_example(CUSTOM_USER_PROVIDER)["server"]
    await server.start()
    try:
        async with Client(f"ws://localhost:{server.port}") as client:
            join = await client.join(None)
    finally:
        await server.stop()
    assert "232769614004748288" in client.server_list
    assert join["data"]["users"] == {
        "123456789": {
            "uid": "123456789",
            "username": "Echter Benutzer",
            "status": "online",
            "roleColor": "#5865f2",
        }
    }


async def test_custom_server_provider_replaces_the_mock_guilds():
    server = run_example(CUSTOM_USER_PROVIDER, CUSTOM_SERVER_PROVIDER)["server"]
    await server.start()
    try:
        async with Client(f"ws://localhost:{server.port}") as client:
            join = await client.join(None)
    finally:
        await server.stop()
    assert client.server_list == {
        "987654321": {
            "id": "987654321",
            "name": "Mein Discord-Server",
            "passworded": False,
            "default": True,
        }
    }
    assert join["data"]["serverName"] == "Mein Discord-Server"
    assert set(join["data"]["users"]) == {"123456789"}


async def test_real_time_updates_reach_the_viewers():
    namespace = run_example(CUSTOM_USER_PROVIDER, CUSTOM_SERVER_PROVIDER, REAL_TIME_UPDATES)
    server = namespace["server"]
    await server.start()
    try:
        async with Client(f"ws://localhost:{server.port}") as client:
            await client.join(None)
            await namespace["on_change"](server, "987654321", "123456789", "idle")
            presence = await client.recv_type("presence")
            rejoin = await client.recv_type("server-join")
            refresh = await client.recv_type("refresh_data")
    finally:
        await server.stop()
    assert presence["data"]["status"] == "idle"
    assert presence["data"]["username"] == "Echter Benutzer"
    assert rejoin["data"]["request"] == {"server": "default"}
    assert refresh == {"type": "refresh_data", "serverId": "987654321"}


async def test_the_guides_pytest_example_with_server_list_read_first():
    """The guide's test reads the first frame as the answer; the first frame is server-list."""
    namespace = run_example(CUSTOM_USER_PROVIDER)
    server = namespace["server"]
    await server.start()
    try:
        async with websockets.connect(f"ws://localhost:{server.port}") as websocket:
            first = json.loads(await websocket.recv())
            assert first["type"] == "server-list"
            await websocket.send(
                json.dumps({"type": "get_user_data", "serverId": "232769614004748288"})
            )
            response = await websocket.recv()
            data = json.loads(response)
            assert data["type"] == "user_data"
            assert "users" in data
            assert data["users"]["123456789"]["username"] == "Echter Benutzer"
    finally:
        await server.stop()


async def test_run_forever_serves_until_stop():
    import asyncio

    server = run_example(CUSTOM_USER_PROVIDER)["server"]
    task = asyncio.create_task(server.run_forever())
    for _ in range(100):
        if server.server is not None:
            break
        await asyncio.sleep(0.02)
    async with Client(f"ws://localhost:{server.port}") as client:
        assert (await client.join(None))["type"] == "server-join"
    assert not task.done()
    await server.stop()
    await asyncio.wait_for(task, 5)
