"""The code examples of d-back's provider guide, run as written against dback.

Each example is kept verbatim in a string and executed; the test then drives the server it
built. Only the port is changed after the example ran (to a free one), so parallel test runs
and a developer's own server on port 3000 do not collide. Where an example calls a function
the guide leaves to the reader (``fetch_from_api``, ``get_default_value``, ...), the test
supplies one.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import websockets

from dback_core.testing import Client
from tests.support.ports import free_port

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

HYBRID_PROVIDER = """
async def hybrid_user_data(server_id: str) -> Dict[str, Any]:
    # Try Discord API first
    discord_users = await get_discord_users(server_id)
    # Fall back to database if Discord unavailable
    if not discord_users:
        discord_users = await get_database_users(server_id)
    # Merge with cached data
    cached_users = await get_cached_users(server_id)
    discord_users.update(cached_users)
    return discord_users
server.on_get_user_data(hybrid_user_data)
"""

CACHED_PROVIDER = """
from functools import lru_cache
from datetime import datetime, timedelta
class CachedProvider:
    def __init__(self):
        self.cache = {}
        self.cache_timeout = timedelta(minutes=5)
    async def get_user_data(self, server_id: str) -> Dict[str, Any]:
        now = datetime.now()
        # Check cache
        if server_id in self.cache:
            cached_data, cached_time = self.cache[server_id]
            if now - cached_time < self.cache_timeout:
                return cached_data
        # Fetch fresh data
        data = await fetch_from_api(server_id)
        self.cache[server_id] = (data, now)
        return data
"""

VALIDATE_USER_DATA = '''
# Always validate and transform data
def validate_user_data(data: Dict) -> Dict:
    """Ensure user data has required fields."""
    required_fields = ["uid", "username", "status", "roleColor"]
    for user_id, user_data in data.items():
        for field in required_fields:
            if field not in user_data:
                user_data[field] = get_default_value(field)
    return data
'''

MOCK_GUILD = "232769614004748288"


def user(uid: str, username: str, status: str = "online") -> dict:
    return {"uid": uid, "username": username, "status": status, "roleColor": "#5865f2"}


def run_example(*sources: str, **helpers: object) -> dict:
    """Run the examples in one namespace; ``helpers`` are the reader's own functions that
    an example calls but the guide leaves undefined (``fetch_from_api`` and the like)."""
    namespace: dict = dict(helpers)
    for source in sources:
        exec(compile(source, "<seed example>", "exec"), namespace)
    namespace["server"].port = free_port()
    return namespace


@contextlib.asynccontextmanager
async def serving(server) -> AsyncIterator[Client]:
    """Start an example's ``server``, connect a client to it, and stop the server after."""
    await server.start()
    try:
        async with Client(f"ws://localhost:{server.port}") as client:
            yield client
    finally:
        await server.stop()


async def test_custom_user_provider_serves_its_users_in_the_mock_guilds():
    server = run_example(CUSTOM_USER_PROVIDER)["server"]
    async with serving(server) as client:
        join = await client.join(None)
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
    async with serving(server) as client:
        join = await client.join(None)
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
    async with serving(server) as client:
        await client.join(None)
        await namespace["on_change"](server, "987654321", "123456789", "idle")
        presence = await client.recv_type("presence")
        rejoin = await client.recv_type("server-join")
        refresh = await client.recv_type("refresh_data")
    assert presence["data"]["status"] == "idle"
    assert presence["data"]["username"] == "Echter Benutzer"
    assert rejoin["data"]["request"] == {"server": client.server_list["987654321"]["id"]}
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


async def test_the_hybrid_provider_falls_back_and_merges_the_cache():
    asked = []

    async def get_discord_users(server_id):
        asked.append(("discord", server_id))
        return {}  # Discord is unavailable

    async def get_database_users(server_id):
        asked.append(("database", server_id))
        return {"1": user("1", "aus der Datenbank"), "2": user("2", "veraltet")}

    async def get_cached_users(server_id):
        return {"2": user("2", "aus dem Cache", "idle")}

    server = run_example(
        CUSTOM_USER_PROVIDER,
        HYBRID_PROVIDER,
        get_discord_users=get_discord_users,
        get_database_users=get_database_users,
        get_cached_users=get_cached_users,
    )["server"]
    async with serving(server) as client:
        join = await client.join(MOCK_GUILD)
    assert asked[:2] == [("discord", MOCK_GUILD), ("database", MOCK_GUILD)]
    users = join["data"]["users"]
    assert set(users) == {"1", "2"}
    assert users["1"]["username"] == "aus der Datenbank"
    assert (users["2"]["username"], users["2"]["status"]) == ("aus dem Cache", "idle")


async def test_the_cached_provider_fetches_once_and_serves():
    fetched = []

    async def fetch_from_api(server_id):
        fetched.append(server_id)
        return {"7": user("7", "Zwischengespeichert")}

    namespace = run_example(CUSTOM_USER_PROVIDER, CACHED_PROVIDER, fetch_from_api=fetch_from_api)
    provider = namespace["CachedProvider"]()
    first = await provider.get_user_data(MOCK_GUILD)
    assert await provider.get_user_data(MOCK_GUILD) is first
    assert fetched == [MOCK_GUILD]

    server = namespace["server"]
    server.on_get_user_data(provider.get_user_data)
    async with serving(server) as client:
        join = await client.join(MOCK_GUILD)
    assert join["data"]["users"]["7"]["username"] == "Zwischengespeichert"
    assert fetched == [MOCK_GUILD]


async def test_validate_user_data_fills_missing_fields_the_server_accepts():
    defaults = {"username": "Unbekannt", "status": "offline", "roleColor": "#000000"}
    namespace = run_example(
        CUSTOM_USER_PROVIDER, VALIDATE_USER_DATA, get_default_value=defaults.__getitem__
    )
    validate_user_data = namespace["validate_user_data"]
    assert validate_user_data({"5": {"uid": "5"}}) == {"5": {"uid": "5", **defaults}}

    async def incomplete_users(server_id):
        return validate_user_data({"5": {"uid": "5", "status": "dnd"}})

    server = namespace["server"]
    server.on_get_user_data(incomplete_users)
    async with serving(server) as client:
        join = await client.join(MOCK_GUILD)
    assert join["data"]["users"] == {
        "5": {"uid": "5", "username": "Unbekannt", "status": "dnd", "roleColor": "#000000"}
    }
