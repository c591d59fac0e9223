"""The provider guide's ``DatabaseProvider`` example, run as written against our schema.

The example is kept verbatim (indentation restored) and run through the d-back API,
``d_back.server.WebSocketServer``. Only three literals are swapped before it runs: the
placeholder connection string for this test's database, port 3000 for a free port, and
host 0.0.0.0 for 127.0.0.1 (servers on this machine bind the loopback interface only).
"""

from __future__ import annotations

import json

import asyncpg
import pytest
import websockets
from postgres_helpers import seed_guild

from d_back.server import WebSocketServer
from tests.support.ports import free_port

pytestmark = pytest.mark.postgres

DATABASE_PROVIDER = """
import asyncpg
from typing import Dict, Any, Optional
class DatabaseProvider:
    def __init__(self, connection_string: str):
        self.connection_string = connection_string
        self.pool = None
    async def connect(self):
        self.pool = await asyncpg.create_pool(self.connection_string)
    async def get_user_data(self, server_id: str) -> Dict[str, Any]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT user_id, username, status, role_color FROM users WHERE server_id = $1",
                server_id
            )
            users = {}
            for row in rows:
                users[row['user_id']] = {
                    "uid": row['user_id'],
                    "username": row['username'],
                    "status": row['status'],
                    "roleColor": row['role_color']
                }
            return users
    async def get_server_data(self, server_id: Optional[str] = None) -> Dict[str, Any]:
        async with self.pool.acquire() as conn:
            if server_id:
                rows = await conn.fetch(
                    "SELECT * FROM servers WHERE server_id = $1",
                    server_id
                )
            else:
                rows = await conn.fetch("SELECT * FROM servers")
            servers = {}
            for row in rows:
                servers[row['server_id']] = {
                    "id": row['server_id'],
                    "name": row['name'],
                    "passworded": row['passworded'],
                    "is_default": row['is_default'],
                    "enabled": row['enabled']
                }
            return servers
# Usage
async def main():
    db = DatabaseProvider("postgresql://user:pass@localhost/d_back")
    await db.connect()
    # Create server with database callbacks
    server = WebSocketServer(port=3000, host="0.0.0.0")
    server.on_get_user_data(db.get_user_data)
    server.on_get_server_data(db.get_server_data)
    await server.start()
"""

GUILD = "232769614004748288"


class RecordingWebSocketServer(WebSocketServer):
    """The real class; it only remembers its instances so the test can stop them."""

    instances: list[WebSocketServer] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.instances.append(self)


async def test_the_guides_database_provider_serves_our_schema(db, dsn, monkeypatch):
    monkeypatch.setenv("DBACK_PLUGINS", "")
    # The example never closes its pool; remember it so the test can before dropping the
    # database. The example still calls the real asyncpg.create_pool.
    pools = []
    create_pool = asyncpg.create_pool

    def recording_create_pool(*args, **kwargs):
        pool = create_pool(*args, **kwargs)
        pools.append(pool)
        return pool

    monkeypatch.setattr(asyncpg, "create_pool", recording_create_pool)
    uids = await seed_guild(db, GUILD, "D-Base", members=3)
    await db.execute("INSERT INTO servers (server_id, name, enabled) VALUES ('9', 'Off', false)")
    port = free_port()
    source = (
        DATABASE_PROVIDER.replace("postgresql://user:pass@localhost/d_back", dsn)
        .replace("port=3000", f"port={port}")
        .replace('host="0.0.0.0"', 'host="127.0.0.1"')
    )
    namespace = {"WebSocketServer": RecordingWebSocketServer}
    exec(compile(source, "<seed example>", "exec"), namespace)
    await namespace["main"]()
    server = RecordingWebSocketServer.instances.pop()
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}") as websocket:
            server_list = json.loads(await websocket.recv())
            assert server_list["type"] == "server-list"
            assert server_list["data"] == {
                GUILD: {"id": GUILD, "name": "D-Base", "passworded": False, "default": True}
            }
            await websocket.send(json.dumps({"type": "get_user_data", "serverId": GUILD}))
            data = json.loads(await websocket.recv())
            assert data["type"] == "user_data"
            assert set(data["users"]) == set(uids)
            assert data["users"][uids[0]]["roleColor"] == "#5865f2"

            await websocket.send(json.dumps({"type": "connect", "data": {"server": GUILD}}))
            join = json.loads(await websocket.recv())
            assert join["type"] == "server-join"
            assert join["data"]["serverName"] == "D-Base"
            assert set(join["data"]["users"]) == set(uids)
    finally:
        await server.stop()
        for pool in pools:
            await pool.close()
