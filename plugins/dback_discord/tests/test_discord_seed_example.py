"""The seed guide's discord.py example - a bot plus ``WebSocketServer`` - run as written.

The example is kept verbatim except for its last line: ``bot.run(...)`` owns the event loop,
so the test calls ``bot.start`` instead, against the fake Discord. The typing names it uses
come from the guide's earlier examples, so they are imported first, as the guide does.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
from discord_world import ALICE, DAVE, LOUNGE, WORKSHOP

from dback_core.testing import Client

EARLIER_IMPORTS = "from typing import Dict, Any, Optional\n"

DISCORD_EXAMPLE = '''
import discord
from discord.ext import commands
from d_back.server import WebSocketServer
bot = commands.Bot(command_prefix="!", intents=discord.Intents.all())
ws_server = WebSocketServer(port=3000, host="localhost")
async def get_discord_user_data(server_id: str) -> Dict[str, Any]:
    guild = bot.get_guild(int(server_id))
    if not guild:
        return {}
    users = {}
    for member in guild.members:
        users[str(member.id)] = {
            "uid": str(member.id),
            "username": member.display_name,
            "status": str(member.status),
            "roleColor": str(member.color) if member.color else "#000000"
        }
    return users
async def get_discord_servers(server_id: Optional[str] = None) -> Dict[str, Any]:
    servers = {}
    for guild in bot.guilds:
        servers[str(guild.id)] = {
            "id": str(guild.id),
            "name": guild.name,
            "passworded": False,
            "is_default": False,
            "enabled": True
        }
    if server_id:
        return {server_id: servers.get(server_id, {})}
    return servers
# Register callbacks
ws_server.on_get_user_data(get_discord_user_data)
ws_server.on_get_server_data(get_discord_servers)
# Discord bot events
@bot.event
async def on_ready():
    """Start WebSocket server when bot is ready."""
    print(f"Bot logged in as {bot.user}")
    print(f"Starting WebSocket server...")
    await ws_server.start()
@bot.event
async def on_presence_update(before, after):
    """Broadcast presence changes to d-zone."""
    if before.status != after.status:
        await ws_server.broadcast_presence(
            str(after.guild.id),
            str(after.id),
            str(after.status)
        )
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
async def test_the_guides_discord_bot_example_serves_live_guilds(fake, monkeypatch):
    monkeypatch.setenv("DBACK_PLUGINS", "")
    namespace: dict = {}
    exec(compile(EARLIER_IMPORTS + DISCORD_EXAMPLE, "<seed discord example>", "exec"), namespace)
    bot, ws_server = namespace["bot"], namespace["ws_server"]
    ws_server.port = free_port()
    runner = asyncio.create_task(bot.start(fake.token))
    try:
        for _ in range(500):
            if ws_server.server is not None or runner.done():
                break
            await asyncio.sleep(0.02)
        async with Client(f"ws://localhost:{ws_server.port}") as client:
            join = await client.join(str(LOUNGE))
            await fake.set_status(LOUNGE, DAVE, "online")
            presence = await client.recv_type("presence")
    finally:
        await bot.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner, 5)
        await ws_server.stop()
    assert set(client.server_list) == {str(LOUNGE), str(WORKSHOP)}
    alice = join["data"]["users"][str(ALICE)]
    assert (alice["username"], alice["status"], alice["roleColor"]) == (
        "Alice",
        "online",
        "#e74c3c",
    )
    assert presence["data"] == {
        "uid": str(DAVE),
        "username": "dave",
        "status": "online",
        "roleColor": "#000000",
    }
