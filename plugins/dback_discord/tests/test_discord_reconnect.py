"""Gateway reconnects: a resumed session keeps its events; a new session reloads the guilds."""

from __future__ import annotations

import asyncio

from discord_world import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    FAST_BOT,
    LOUNGE,
    WORKSHOP,
    build_world,
    discord_dback,
)

from dback_core.testing import Client, running_server
from dback_discord import plugin


async def test_reconnect_request_resumes_and_events_keep_flowing(fake, monkeypatch, tmp_path):
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            await fake.reconnect()
            await fake.set_status(LOUNGE, CAROL, "online")
            frame = await client.recv_type("presence")
    assert frame["data"]["uid"] == str(CAROL) and frame["data"]["status"] == "online"
    assert (fake.identifies, fake.resumes) == (1, 1)


async def test_events_missed_while_disconnected_are_replayed(fake, monkeypatch, tmp_path):
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            await fake.drop_connections()
            await fake.set_status(LOUNGE, BOB, "dnd")
            frame = await client.recv_type("presence")
    assert frame["data"]["uid"] == str(BOB) and frame["data"]["status"] == "dnd"
    assert (fake.identifies, fake.resumes) == (1, 1)


async def test_a_new_session_reloads_the_guild_for_its_viewers(fake, monkeypatch, tmp_path):
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            first = await client.join(str(LOUNGE))
            # Changes Discord never dispatched to the old session: only a reload shows them.
            del fake.guilds[LOUNGE].members[DAVE]
            fake.guilds[LOUNGE].members[ALICE].status = "idle"
            await fake.invalidate_sessions()
            rejoin = await client.recv_type("server-join", timeout=10)
            refresh = await client.recv_type("refresh_data")
    assert str(DAVE) in first["data"]["users"]
    assert str(DAVE) not in rejoin["data"]["users"]
    assert rejoin["data"]["users"][str(ALICE)]["status"] == "idle"
    assert refresh == {"type": "refresh_data", "serverId": str(LOUNGE)}
    assert fake.identifies == 2


async def test_a_guild_that_becomes_available_later_is_served_then(fake, monkeypatch, tmp_path):
    """READY may list a guild as unavailable (a Discord outage); its GUILD_CREATE comes
    later, and only then are its name and members known: until then it is not listed."""
    fake.guilds_held = asyncio.Event()
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            early_list = client.server_list
            early = await client.join(str(LOUNGE))
            fake.guilds_held.set()
            listed = await client.recv_type("server-list", timeout=10)
            join = await client.join(str(LOUNGE))
    assert early_list == {} and early["type"] == "error"
    assert listed["data"][str(LOUNGE)]["name"] == "Lounge"
    assert join["data"]["serverName"] == "Lounge"
    assert join["data"]["users"][str(ALICE)]["status"] == "online"


async def test_a_discord_unreachable_at_startup_is_tried_again(monkeypatch, tmp_path, caplog):
    """Login is not retried by discord.py; the plugin tries again until Discord answers."""
    monkeypatch.setattr(plugin, "RETRY_FIRST", 0.05)
    monkeypatch.setattr(plugin, "RETRY_MAX", 0.2)
    world = build_world()
    await world.start()
    try:
        # Not redirected yet: discord.py's calls go to a port where nothing listens.
        path = tmp_path / "discord.toml"
        path.write_text(FAST_BOT)
        monkeypatch.setenv("DBACK_DISCORD_TOKEN", world.token)
        monkeypatch.setenv("DBACK_DISCORD_CONFIG", str(path))
        environ = {"DBACK_PLUGINS": "dback-discord", "DBACK_STRICT_PLUGINS": "1"}
        async with running_server(environ=environ, provider_timeout=2.0) as server:
            async with Client(server) as client:
                early = client.server_list
                with world.redirect():
                    listed = await client.recv_type("server-list", timeout=10)
                    join = await client.join(str(LOUNGE))
    finally:
        await world.stop()
    assert early == {}
    assert "cannot reach Discord (ClientConnectorError" in caplog.text
    assert set(listed["data"]) == {str(LOUNGE), str(WORKSHOP)}
    assert join["data"]["users"][str(ALICE)]["status"] == "online"
    assert world.identifies == 1
