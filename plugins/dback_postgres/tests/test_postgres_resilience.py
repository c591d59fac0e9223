"""The database goes away and comes back; the server never stops and clients miss nothing."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
import pytest
from postgres_helpers import (
    dsn_for,
    http_status,
    listening,
    postgres_plugin,
    presence_of,
    seed_guild,
    wait_until,
)

from dback_core.testing import Client, running_server
from tests.support.tcp_forwarder import TcpForwarder

pytestmark = pytest.mark.postgres

GUILD = "232769614004748288"

log = logging.getLogger(__name__)


async def test_a_killed_connection_is_restored_and_changes_made_meanwhile_arrive(
    postgres_env, db, admin, database, caplog
):
    caplog.set_level(logging.INFO, logger="dback_postgres")
    uids = await seed_guild(db, GUILD, members=3)
    async with running_server() as server:
        await listening(server)
        async with Client(server) as client:
            await client.join(GUILD)
            await db.execute("UPDATE users SET status = 'idle' WHERE user_id = $1", uids[0])
            await client.wait_for(presence_of(uids[0], status="idle"))

            # Kill every connection the server has and keep it from reconnecting while the
            # rows change, so these changes can only reach the client through the resync.
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> $2",
                database,
                db.get_server_pid(),
            )
            assert killed >= 1
            plugin = postgres_plugin(server)
            await wait_until(lambda: not plugin.listener.listening)
            await db.execute("UPDATE users SET status = 'dnd' WHERE user_id = $1", uids[1])
            await db.execute("DELETE FROM users WHERE user_id = $1", uids[2])
            await db.execute(
                "INSERT INTO users VALUES ('777', $1, 'Meanwhile', 'online', NULL)", GUILD
            )
            # The first line reports the lost connection, the next a refused reconnection.
            await wait_until(lambda: caplog.text.count("is unavailable") >= 2)
            assert plugin.listener.listening is False
            assert await http_status(server, "/readyz") == 503

            # A periodic reload during the outage keeps what was served instead of emptying it.
            await server.refresh(None)
            await server.directory.load(GUILD)
            async with Client(server) as newcomer:
                assert set(newcomer.server_list) == {GUILD}
                stale = await newcomer.join(GUILD)
                assert stale["data"]["users"][uids[0]]["status"] == "idle"
                assert set(stale["data"]["users"]) == set(uids)

            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            join = await client.recv_type("server-join", timeout=20)
            users = join["data"]["users"]
            assert users[uids[0]]["status"] == "idle"
            assert users[uids[1]]["status"] == "dnd"
            assert uids[2] not in users
            assert users["777"]["username"] == "Meanwhile"

            # And the stream goes on over the new connection.
            await listening(server)
            assert await http_status(server, "/readyz") == 200
            await db.execute("UPDATE users SET status = 'offline' WHERE user_id = '777'")
            await client.wait_for(presence_of("777", status="offline"))

            # A second kill, of the listening connection alone, is survived the same way.
            pid = plugin.listener.connection.get_server_pid()
            await db.execute("SELECT pg_terminate_backend($1)", pid)
            await wait_until(
                lambda: (
                    plugin.listener.listening and plugin.listener.connection.get_server_pid() != pid
                )
            )
            await db.execute("UPDATE users SET status = 'online' WHERE user_id = '777'")
            await client.wait_for(presence_of("777", status="online"))


async def test_a_database_down_at_startup_is_not_ready_and_is_served_once_it_answers(
    monkeypatch, postgres_env, db, database, caplog
):
    caplog.set_level(logging.INFO, logger="dback_postgres")
    monkeypatch.delenv("DBACK_POSTGRES_RETRY_MAX")  # the default, as an operator runs it
    uids = await seed_guild(db, GUILD, members=2)
    forwarder = TcpForwarder("127.0.0.1", 5432)
    monkeypatch.setenv("DBACK_POSTGRES_DSN", dsn_for(database, port=forwarder.port))
    try:
        async with running_server() as server:
            assert "unavailable" in caplog.text
            assert await http_status(server, "/readyz") == 503
            async with Client(server) as client:
                assert client.server_list == {}
                await wait_until(lambda: "next attempt in" in caplog.text)
                await asyncio.sleep(3)  # long enough for the retry delay to reach its ceiling

                await forwarder.start()
                started = time.monotonic()
                frame = await client.recv_type("server-list", timeout=20)
                served_after = time.monotonic() - started
                log.info("guilds served %.2fs after the database came back", served_after)
                assert set(frame["data"]) == {GUILD}
                await wait_until(lambda: postgres_plugin(server).listener.listening)
                assert await http_status(server, "/readyz") == 200
                join = await client.join(GUILD)
                assert set(join["data"]["users"]) == set(uids)
                await db.execute("UPDATE users SET status = 'idle' WHERE user_id = $1", uids[0])
                await client.wait_for(presence_of(uids[0], status="idle"))
    finally:
        await forwarder.stop()


async def test_a_silent_network_cut_is_detected_by_the_keepalive(
    monkeypatch, postgres_env, db, database, caplog
):
    caplog.set_level(logging.INFO, logger="dback_postgres")
    monkeypatch.setenv("DBACK_POSTGRES_KEEPALIVE", "0.5")
    monkeypatch.setenv("DBACK_POSTGRES_TIMEOUT", "1")
    uids = await seed_guild(db, GUILD, members=2)
    forwarder = TcpForwarder("127.0.0.1", 5432)
    await forwarder.start()
    monkeypatch.setenv("DBACK_POSTGRES_DSN", dsn_for(database, port=forwarder.port))
    try:
        async with running_server() as server:
            await listening(server)
            async with Client(server, timeout=30) as client:
                await client.join(GUILD)
                forwarder.pause()
                plugin = postgres_plugin(server)
                await wait_until(lambda: not plugin.listener.listening, timeout=30)
                assert "TimeoutError" in caplog.text
                await db.execute("UPDATE users SET status = 'dnd' WHERE user_id = $1", uids[1])
                forwarder.resume()
                join = await client.recv_type("server-join")
                assert join["data"]["users"][uids[1]]["status"] == "dnd"
    finally:
        await forwarder.stop()


async def test_a_slow_query_times_out_instead_of_hanging_a_join(
    monkeypatch, postgres_env, db, dsn, caplog
):
    monkeypatch.setenv("DBACK_POSTGRES_TIMEOUT", "0.5")
    await seed_guild(db, GUILD, members=2)
    async with running_server() as server:
        await listening(server)
        blocker = await asyncpg.connect(dsn)
        try:
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            async with Client(server, timeout=30) as client:
                join = await client.join(GUILD)
                assert join["type"] == "server-join"
                assert join["data"]["users"] == {}
            await transaction.rollback()
        finally:
            await blocker.close()
        assert "get_user_data failed: PostgreSQL at" in caplog.text
        assert "failed: TimeoutError" in caplog.text
