"""A 10,000-member guild: loaded from PostgreSQL, joined, and kept live.

Times are measured and logged (run with ``-o log_cli=true`` to see them), never asserted:
a loaded CI machine must not fail a correct program.
"""

from __future__ import annotations

import logging
import time

import pytest
from postgres_helpers import listening, seed_guild

from dback_core.testing import Client, running_server

pytestmark = pytest.mark.postgres

GUILD = "232769614004748288"
MEMBERS = 10_000

log = logging.getLogger(__name__)


async def test_a_ten_thousand_member_guild_is_loaded_joined_and_live(postgres_env, db):
    started = time.perf_counter()
    uids = await seed_guild(db, GUILD, "Big", members=MEMBERS)
    seeded_ms = (time.perf_counter() - started) * 1000
    async with running_server() as server:
        await listening(server)
        async with Client(server, timeout=60, max_size=None) as client:
            started = time.perf_counter()
            join = await client.join(GUILD)
            first_join_ms = (time.perf_counter() - started) * 1000
            assert join["type"] == "server-join"
            assert len(join["data"]["users"]) == MEMBERS
            assert join["data"]["users"][uids[-1]]["username"] == f"member {MEMBERS - 1}"

            started = time.perf_counter()
            guild = await server.directory.load(GUILD)
            load_ms = (time.perf_counter() - started) * 1000
            assert len(guild.users) == MEMBERS

            started = time.perf_counter()
            again = await client.join(GUILD)
            second_join_ms = (time.perf_counter() - started) * 1000
            assert len(again["data"]["users"]) == MEMBERS

            started = time.perf_counter()
            await db.execute("UPDATE users SET status = 'idle' WHERE user_id = $1", uids[5000])
            frame = await client.recv_type("presence")
            update_ms = (time.perf_counter() - started) * 1000
            assert frame["data"]["uid"] == uids[5000] and frame["data"]["status"] == "idle"

            started = time.perf_counter()
            await db.execute("UPDATE users SET status = 'dnd' WHERE server_id = $1", GUILD)
            seen = set()
            while len(seen) < MEMBERS:
                frame = await client.recv_type("presence")
                assert frame["data"]["status"] == "dnd"
                seen.add(frame["data"]["uid"])
            bulk_ms = (time.perf_counter() - started) * 1000
    log.info(
        "10k guild: seeded %.0f ms, first join (load + encode + send) %.0f ms, reload %.0f ms, "
        "join from memory %.0f ms, UPDATE -> client %.1f ms, 10k-row UPDATE -> all presences "
        "%.0f ms",
        seeded_ms,
        first_join_ms,
        load_ms,
        second_join_ms,
        update_ms,
        bulk_ms,
    )
