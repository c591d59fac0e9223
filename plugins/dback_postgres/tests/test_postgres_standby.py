"""Put on standby by a holder (a bus whose elected process runs the providers) and released
again, the plugin truly stops and starts over: on hold its LISTEN connection and pool are
closed and nothing reaches viewers; on release it opens a new pool and a new listener, so
nothing of the run that was stopped can deliver anything any more."""

from __future__ import annotations

import asyncio

import pytest
from postgres_helpers import listening, postgres_plugin, seed_guild, wait_until

from dback_core import hookimpl
from dback_core.testing import Client, running_server

pytestmark = pytest.mark.postgres

GUILD = "232769614004748288"


class Holder:
    """Holds the other plugins back; the test releases and holds them."""

    dback_holds_others = True

    def __init__(self) -> None:
        self.host = None

    @hookimpl
    async def startup(self, host):
        self.host = host
        await host.release_plugins()


async def connections_of_this_test(db) -> int:
    """Connections to the test's database other than the test's own."""
    return await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()"
    )


async def say(db, uid: str, text: str) -> None:
    await db.execute(
        "INSERT INTO messages (server_id, user_id, message) VALUES ($1, $2, $3)", GUILD, uid, text
    )


async def test_held_it_stops_everything_and_released_it_starts_fresh(postgres_env, db):
    uids = await seed_guild(db, GUILD, "D-Base", members=2)
    holder = Holder()
    async with running_server([("holder", holder)]) as server:
        await listening(server)
        plugin = postgres_plugin(server)
        first_pool, first_listener = plugin.database.pool, plugin.listener
        async with Client(server) as client:
            await client.join(GUILD)
            await say(db, uids[0], "while released")
            assert (await client.recv_type("message"))["data"]["message"] == "while released"

            await holder.host.hold_plugins()
            assert first_listener.connection is None
            assert plugin.database.pool is None
            await wait_until(lambda: _none_left(db), timeout=10)
            await say(db, uids[0], "while held")

            await holder.host.release_plugins()
            await wait_until(lambda: plugin.listener.listening, timeout=10)
            assert plugin.listener is not first_listener
            assert plugin.database.pool is not None and plugin.database.pool is not first_pool
            assert not first_listener.listening and first_listener.connection is None
            await client.join(GUILD)  # taken out while the guild was gone
            await say(db, uids[1], "released again")
            seen = await client.recv_type("message")
            # Nothing of the held time arrives twice or late: only what came after the
            # release (the chat written while held is history to the fresh listener).
            assert seen["data"]["message"] == "released again"
            with pytest.raises(TimeoutError):
                await client.recv_type("message", timeout=1.0)


async def _none_left(db) -> bool:
    await asyncio.sleep(0)
    return await connections_of_this_test(db) == 0
