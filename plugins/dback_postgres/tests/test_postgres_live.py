"""Changes made by any program in the database reach viewers through LISTEN/NOTIFY.

Each test starts a real dback with the installed plugin against its own database (the first
ones through dback-core's ``dback`` fixture, the rest through ``joined``), joins with a real
WebSocket client, changes rows with plain SQL on another connection, and waits for the
frames the d-zone client would draw.
"""

from __future__ import annotations

import logging
import time

import pytest
from postgres_helpers import (
    joined,
    listening,
    postgres_plugin,
    presence_of,
    seed_guild,
    wait_until,
)

from dback_core.testing import Client
from dback_postgres import listener

pytestmark = pytest.mark.postgres

GUILD = "232769614004748288"

log = logging.getLogger(__name__)


async def test_the_guilds_and_members_in_the_database_are_served(postgres_env, db, dback):
    uids = await seed_guild(db, GUILD, "D-Base", members=3)
    await db.execute(
        "INSERT INTO servers (server_id, name, passworded, is_default) "
        "VALUES ('7', 'Other', true, false)"
    )
    await db.execute("INSERT INTO servers (server_id, name, enabled) VALUES ('8', 'Off', false)")
    await db.execute("UPDATE servers SET client_id = '1234567890' WHERE server_id = $1", GUILD)
    server = await dback.start("dback-postgres")
    await listening(server)
    client = await dback.client(server)
    assert client.server_list == {
        GUILD: {"id": GUILD, "name": "D-Base", "passworded": False, "default": True},
        "7": {"id": "7", "name": "Other", "passworded": True},
    }
    join = await client.join(GUILD)
    assert join["type"] == "server-join"
    assert join["data"]["serverName"] == "D-Base"
    assert join["data"]["clientId"] == "1234567890"
    assert join["data"]["users"][uids[0]] == {
        "uid": uids[0],
        "username": "member 0",
        "status": "online",
        "roleColor": "#5865f2",
    }
    assert set(join["data"]["users"]) == set(uids)


async def test_a_status_update_reaches_every_viewer(postgres_env, db, dback):
    uids = await seed_guild(db, GUILD, members=3)
    server = await dback.start("dback-postgres")
    await listening(server)
    first, second = await dback.client(server), await dback.client(server)
    await first.join(GUILD)
    await second.join(GUILD)
    latencies = []
    for status in ["idle", "dnd", "offline", "online"] * 5:
        started = time.perf_counter()
        await db.execute("UPDATE users SET status = $1 WHERE user_id = $2", status, uids[1])
        for client in (first, second):
            frame = await client.wait_for(presence_of(uids[1], status=status))
            assert frame["data"]["username"] == "member 1"
            assert frame["data"]["roleColor"] == "#5865f2"
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    log.info(
        "UPDATE -> both clients: median %.1f ms, max %.1f ms over %d updates",
        latencies[len(latencies) // 2],
        latencies[-1],
        len(latencies),
    )
    # A later joiner gets the state the events built, from memory.
    third = await dback.client(server)
    join = await third.join(GUILD)
    assert join["data"]["users"][uids[1]]["status"] == "online"


async def test_insert_adds_a_member_and_delete_removes_it(postgres_env, db):
    uids = await seed_guild(db, GUILD, members=2)
    async with joined(GUILD) as (server, client):
        await db.execute(
            "INSERT INTO users VALUES ('999', $1, 'Newcomer', 'dnd', '#ABCDEF')", GUILD
        )
        frame = await client.wait_for(presence_of("999"))
        assert frame["data"] == {
            "uid": "999",
            "username": "Newcomer",
            "status": "dnd",
            "roleColor": "#abcdef",
        }
        await db.execute("UPDATE users SET username = 'Renamed' WHERE user_id = '999'")
        await client.wait_for(presence_of("999", username="Renamed"))

        await db.execute("DELETE FROM users WHERE user_id = $1", uids[0])
        gone = await client.wait_for(presence_of(uids[0], delete=True))
        assert gone["data"]["username"] == "member 0"

        async with Client(server) as later:
            join = await later.join(GUILD)
            assert set(join["data"]["users"]) == {uids[1], "999"}


async def test_disabling_and_enabling_a_guild_updates_the_server_list(postgres_env, db):
    await seed_guild(db, GUILD, "Main", members=1)
    await seed_guild(db, "555", "Side", members=1, is_default=False)
    async with joined(GUILD) as (server, client):
        await db.execute("UPDATE servers SET enabled = false WHERE server_id = '555'")
        frame = await client.recv_type("server-list")
        assert set(frame["data"]) == {GUILD}

        await db.execute("UPDATE servers SET enabled = true WHERE server_id = '555'")
        frame = await client.recv_type("server-list")
        assert set(frame["data"]) == {GUILD, "555"}

        await db.execute("INSERT INTO servers (server_id, name) VALUES ('77', 'Brand new')")
        frame = await client.recv_type("server-list")
        assert frame["data"]["77"] == {"id": "77", "name": "Brand new", "passworded": False}

        await db.execute("UPDATE servers SET name = 'Renamed' WHERE server_id = '77'")
        frame = await client.recv_type("server-list")
        assert frame["data"]["77"]["name"] == "Renamed"

        await db.execute("DELETE FROM servers WHERE server_id = '77'")
        frame = await client.recv_type("server-list")
        assert set(frame["data"]) == {GUILD, "555"}

        async with Client(server) as newcomer:
            assert set(newcomer.server_list) == {GUILD, "555"}


async def test_messages_and_client_id_changes_are_pushed(postgres_env, db):
    uids = await seed_guild(db, GUILD, members=2)
    async with joined(GUILD) as (_server, client):
        await db.execute(
            "INSERT INTO messages (server_id, user_id, message, channel) "
            "VALUES ($1, $2, 'Hallo Welt', 'general')",
            GUILD,
            uids[0],
        )
        frame = await client.recv_type("message")
        assert frame["data"] == {"uid": uids[0], "message": "Hallo Welt", "channel": "general"}

        await db.execute("UPDATE servers SET client_id = '424242' WHERE server_id = $1", GUILD)
        frame = await client.recv_type("update-clientid")
        assert frame["data"] == {"clientId": "424242"}


async def test_a_burst_of_changes_ends_in_the_final_state(postgres_env, db):
    uids = await seed_guild(db, GUILD, members=50)
    async with joined(GUILD) as (server, client):
        async with db.transaction():
            for round_ in range(20):
                status = ["idle", "dnd"][round_ % 2]
                await db.execute("UPDATE users SET status = $1", status)
        seen = {uid: "online" for uid in uids}

        def all_dnd(frame: dict) -> bool:
            if frame.get("type") == "presence":
                seen[frame["data"]["uid"]] = frame["data"]["status"]
            return all(status == "dnd" for status in seen.values())

        await client.wait_for(all_dnd, timeout=10)
        assert server.directory.guilds[GUILD].users[uids[0]]["status"] == "dnd"


async def test_garbage_on_the_channel_is_ignored(postgres_env, db, caplog):
    uids = await seed_guild(db, GUILD, members=1)
    async with joined(GUILD) as (server, client):
        await db.execute("SELECT pg_notify('dback_changes', 'not json')")
        await db.execute("""SELECT pg_notify('dback_changes', '{"table": "users"}')""")
        await db.execute(
            """SELECT pg_notify('dback_changes', '{"table": "messages", "message_id": "x"}')"""
        )
        await db.execute("UPDATE users SET status = 'idle' WHERE user_id = $1", uids[0])
        await client.wait_for(presence_of(uids[0], status="idle"))
    assert "not sent by dback" in caplog.text
    assert caplog.text.count("without its keys") == 2
    assert server.sources.restarts == {}


async def test_a_burst_larger_than_the_listener_holds_becomes_one_reload(
    postgres_env, db, caplog, monkeypatch
):
    """Unread notifications are bounded: past ``MAX_PENDING`` every guild is reloaded."""
    monkeypatch.setattr(listener, "MAX_PENDING", 20)
    uids = await seed_guild(db, GUILD, members=500)
    async with joined(GUILD) as (server, client):
        plugin = postgres_plugin(server)
        # One statement, one commit: 500 notifications arrive together.
        await db.execute("UPDATE users SET status = 'dnd'")

        def all_dnd() -> bool:
            users = server.directory.guilds[GUILD].users
            return all(users[uid]["status"] == "dnd" for uid in uids)

        await wait_until(all_dnd)
        rejoin = await client.recv_type("server-join")
        assert {user["status"] for user in rejoin["data"]["users"].values()} == {"dnd"}
    assert "notifications on dback_changes unread; reloading every guild" in caplog.text
    assert not plugin.listener.overflowed
    assert server.sources.restarts == {}
