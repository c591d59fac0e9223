"""Access follows the guild's row: a viewer who joined while a guild was public is taken out
as soon as the row turns passworded or is disabled, and is sent nothing of it afterwards -
not by LISTEN/NOTIFY, not by the periodic reload when the guild is enabled again.

Silence is checked without waiting for it: once the server has applied a change (its
in-memory guild shows it), ``Client.pending`` returns everything queued for the viewer.
"""

from __future__ import annotations

import asyncio

import pytest
from postgres_helpers import listening, seed_guild, wait_until

from dback_core.serving.server import DbackServer
from dback_core.testing import Client, running_server
from dback_core.wire import protocol

pytestmark = pytest.mark.postgres

GUILD = "232769614004748288"
OTHER = "482241773318701056"


def about(frames: list[dict], guild: str) -> list[dict]:
    return [
        frame
        for frame in frames
        if frame.get("server") == guild
        or frame.get("serverId") == guild
        or frame["type"] == "server-join"
    ]


def status_in_memory(server: DbackServer, uid: str, status: str):
    def check() -> bool:
        guild = server.directory.guilds.get(GUILD)
        return guild is not None and guild.users.get(uid, {}).get("status") == status

    return check


async def test_a_guild_turning_passworded_takes_its_viewers_out(postgres_env, db):
    uids = await seed_guild(db, GUILD, members=2)
    await seed_guild(db, OTHER, "Other", members=1, is_default=False)
    async with running_server() as server:
        await listening(server)
        async with Client(server) as viewer:
            assert (await viewer.join(GUILD))["type"] == "server-join"
            await db.execute("UPDATE servers SET passworded = true WHERE server_id = $1", GUILD)
            told = await viewer.recv_type("error")
            await db.execute("UPDATE users SET status = 'dnd' WHERE user_id = $1", uids[0])
            await db.execute(
                "INSERT INTO messages (server_id, user_id, message) VALUES ($1, $2, 'hi')",
                GUILD,
                uids[0],
            )
            await wait_until(status_in_memory(server, uids[0], "dnd"))
            frames = await viewer.pending(OTHER)
            refused = await viewer.join(GUILD)
    assert told["data"]["message"] == protocol.ACCESS_CHANGED
    assert about(frames, GUILD) == []
    assert [frame["data"][GUILD]["passworded"] for frame in frames] == [True]
    assert refused["data"]["message"] == protocol.LOGIN_REQUIRED


async def test_a_guild_disabled_and_enabled_again_sends_its_old_viewers_nothing(postgres_env, db):
    await seed_guild(db, GUILD, members=2)
    await seed_guild(db, OTHER, "Other", members=1, is_default=False)
    async with running_server(refresh_seconds=1) as server:
        await listening(server)
        async with Client(server) as viewer:
            await viewer.join(GUILD)
            await db.execute("UPDATE servers SET enabled = false WHERE server_id = $1", GUILD)
            told = await viewer.recv_type("error")
            await db.execute("UPDATE servers SET enabled = true WHERE server_id = $1", GUILD)
            await viewer.wait_for(lambda f: f["type"] == "server-list" and GUILD in f["data"])
            target = server.reloader.rounds + 2
            async with asyncio.timeout(10):
                while server.reloader.rounds < target:
                    await asyncio.sleep(0.05)
            frames = await viewer.pending(OTHER)
            back = await viewer.join(GUILD)
    assert told["data"]["message"] == protocol.UNKNOWN_SERVER
    assert about(frames, GUILD) == []
    assert back["type"] == "server-join"
