"""The user's path: ``dback postgres migrate``, ``dback serve`` on the empty database (the
warning says how to add a guild, and that no restart is needed), the guild inserted, and an
UPDATE from psql's point of view (any other connection) reaching a WebSocket client. Real
processes throughout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

import pytest
from postgres_helpers import seed_guild

from dback_core.testing import Client
from tests.support.ports import free_port

pytestmark = pytest.mark.postgres

GUILD = "232769614004748288"


async def test_migrate_then_serve_then_update(dsn, db):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DBACK_POSTGRES_DSN": dsn,
        "DBACK_LOG_LEVEL": "INFO",
    }
    migrate = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dback_core", "postgres", "migrate", env=env
    )
    assert await asyncio.wait_for(migrate.wait(), 60) == 0

    port = free_port()
    serve = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dback_core",
        "serve",
        "--port",
        str(port),
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    lines: list[str] = []
    listening, empty = asyncio.Event(), asyncio.Event()

    async def read_log() -> None:
        assert serve.stderr is not None
        while line := await serve.stderr.readline():
            lines.append(line.decode())
            if "listening on dback_changes" in lines[-1]:
                listening.set()
            if "serving 0 guilds:" in lines[-1]:
                empty.set()

    reader = asyncio.create_task(read_log())
    try:
        await asyncio.wait_for(asyncio.gather(listening.wait(), empty.wait()), 90)
        (warning,) = [line for line in lines if "serving 0 guilds:" in line]
        assert "dback-postgres: its servers table is empty: insert a guild" in warning
        assert "served at once, without a restart" in warning
        assert "restart dback" not in warning

        uids = await seed_guild(db, GUILD, "D-Base", members=2)
        async with Client(f"ws://127.0.0.1:{port}", timeout=10) as client:
            # Installed beside the mock, the configured provider is the only one serving;
            # the guild inserted while serving arrives as a new server list.
            while set(client.server_list) != {GUILD}:
                client.server_list = (await client.recv_type("server-list"))["data"]
            # The id the client shows and puts in ?s= is the row's server_id.
            assert client.server_list[GUILD]["id"] == GUILD
            join = await client.join(GUILD)
            assert set(join["data"]["users"]) == set(uids)
            await db.execute("UPDATE users SET status = 'idle' WHERE user_id = $1", uids[0])
            frame = await client.recv_type("presence")
            assert frame["data"]["uid"] == uids[0] and frame["data"]["status"] == "idle"
    finally:
        serve.terminate()
        assert await asyncio.wait_for(serve.wait(), 30) == 0, "".join(lines)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    assert not [line for line in lines if "Traceback" in line], "".join(lines)
