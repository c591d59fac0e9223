"""A database only its operator can fix, seen as the operator sees it: the real ``dback serve``.

A database or role that does not exist, a role that may not log in and a wrong password
are not outages: the plugin is ``failed`` with the fix in its reason (log, ``/readyz``,
``/api/plugins``), one line per change instead of a warning per retry, and once the
database is fixed it serves without a restart. A database that goes away while serving is
one line per change too, never a traceback.
"""

from __future__ import annotations

import asyncio
import re
import uuid

import asyncpg
from postgres_helpers import (
    Serving,
    dsn_as,
    dsn_for,
    password_required,
    run_dback,
    seed_guild,
)

from dback_core.testing import Client

GUILD = "232769614004748288"
OTHER = "175928847299117063"
#: Checks again every half second while failed: several rechecks happen in each step.
QUICK = {"DBACK_POSTGRES_RETRY_MAX": "0.2", "DBACK_POSTGRES_RECHECK_MAX": "0.5"}


async def failed_with(server: Serving, *parts: str) -> str:
    """Wait until the plugin is failed for a reason holding every part; check that
    ``/readyz`` and ``/api/plugins`` give the same reason. Returns it."""
    await server.wait_for_line("ERROR dback_postgres.outage: .*" + ".*".join(map(re.escape, parts)))
    status, ready = await server.get("/readyz")
    reason = ready["waiting"]["dback-postgres"]
    assert status == 503 and reason.startswith("failed: "), ready
    assert all(part in reason for part in parts), reason
    plugin = await server.plugin()
    assert plugin["status"] == "failed" and plugin["error"] == reason.removeprefix("failed: ")
    return reason


async def serves(server: Serving, guild: str) -> None:
    """The plugin heals by itself: ready, and a client sees ``guild``."""
    await server.wait_for_line("answers again after")
    status, ready = await _ready(server)
    assert status == 200, ready
    async with Client(server.url, timeout=10) as client:
        assert guild in client.server_list


async def _ready(server: Serving) -> tuple[int, dict]:
    """``/readyz`` once the guild list is reloaded after healing (a moment after the log)."""
    for _ in range(100):
        status, ready = await server.get("/readyz")
        if status == 200:
            break
        await asyncio.sleep(0.1)
    return status, ready


def lines_with(server: Serving, text: str) -> list[str]:
    return [line for line in server.lines if text in line]


async def test_a_missing_database_names_migrate_and_serves_once_migrated(admin):
    name = f"dback_test_{uuid.uuid4().hex[:12]}"
    dsn = dsn_for(name)
    try:
        async with Serving(dsn, DBACK_LOG_LEVEL="DEBUG", **QUICK) as server:
            reason = await failed_with(
                server, f'database "{name}" does not exist', "run `dback postgres migrate`"
            )
            await server.wait_for_line("failed again", after=0)  # rechecked, quietly
            await server.wait_for_line("failed again", after=len(server.lines))

            migrate = await asyncio.to_thread(run_dback, "postgres", "migrate", dsn=dsn)
            assert migrate.returncode == 0, migrate.stderr
            assert f"created database {name}" in migrate.stdout
            connection = await asyncpg.connect(dsn)
            try:
                await seed_guild(connection, GUILD, members=2)
            finally:
                await connection.close()
            await serves(server, GUILD)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert "Traceback" not in server.log
    # One line for the refusal however often it was checked, one for the health change.
    assert len(lines_with(server, "ERROR dback_postgres.outage")) == 1, server.log
    assert "failed" in reason


async def test_a_missing_role_then_one_without_login_then_a_wrong_password_each_say_the_fix(
    admin, database, db
):
    role = f"dback_test_{uuid.uuid4().hex[:8]}"
    await seed_guild(db, GUILD, members=2)
    dsn = dsn_as(role, "the-right-one", database)
    try:
        async with Serving(dsn, DBACK_LOG_LEVEL="DEBUG", **QUICK) as server:
            await failed_with(server, f'role "{role}" does not exist', f"CREATE ROLE {role} LOGIN")

            await admin.execute(f"CREATE ROLE {role} NOLOGIN PASSWORD 'another-one'")
            await db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
            await failed_with(server, "is not permitted to log in", f"ALTER ROLE {role} LOGIN")

            async with password_required(admin, role):
                await admin.execute(f"ALTER ROLE {role} LOGIN")
                await failed_with(
                    server,
                    f'password authentication failed for user "{role}"',
                    "check the password in DBACK_POSTGRES_DSN",
                    f"ALTER ROLE {role} PASSWORD",
                )
                rechecks = len(lines_with(server, "failed again"))
                await server.wait_for_line("failed again", after=len(server.lines))
                assert len(lines_with(server, "failed again")) > rechecks

                await admin.execute(f"ALTER ROLE {role} PASSWORD 'the-right-one'")
                await serves(server, GUILD)
    finally:
        if await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            await db.execute(f"DROP OWNED BY {role}")
            await admin.execute(f"DROP ROLE {role}")
    assert "Traceback" not in server.log
    refusals = lines_with(server, "ERROR dback_postgres.outage")
    assert len(refusals) == 3, "".join(refusals)  # one per reason, not one per check
    # The guilds were withdrawn while failed and came back: the core said so once each.
    assert len(lines_with(server, "plugin dback-postgres failed")) == 1
    assert len(lines_with(server, "plugin dback-postgres is serving again")) == 1


async def test_a_database_away_while_serving_is_one_line_per_change_and_no_traceback(
    admin, database, db, dsn
):
    await seed_guild(db, GUILD, members=2)
    await seed_guild(db, OTHER, "Elsewhere", members=1, is_default=False)
    async with Serving(dsn, DBACK_REFRESH_SECONDS="1", **QUICK) as server:
        await server.wait_for_line("listening on dback_changes")
        async with Client(server.url, timeout=10) as client:
            await client.join(GUILD)
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> $2",
                database,
                db.get_server_pid(),
            )
            await server.wait_for_line("plugin dback-postgres is unavailable")
            # Reconnections, periodic reloads and a join of a guild not loaded yet all fail
            # meanwhile, again and again.
            away = len(server.lines)
            for _ in range(3):
                await server.wait_for_line("keeping its last guild list", after=len(server.lines))
            async with Client(server.url, timeout=10) as newcomer:
                await newcomer.join(OTHER)
            status, ready = await server.get("/readyz")
            assert status == 503
            assert ready["waiting"]["dback-postgres"].startswith(
                "unavailable: cannot reach PostgreSQL at"
            )
            assert (await server.plugin())["status"] == "unavailable"

            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            await serves(server, GUILD)
            during = server.lines[away:]
    assert "Traceback" not in server.log
    assert len(lines_with(server, "WARNING asyncpg.pool")) <= 1, server.log
    assert len(lines_with(server, "is unavailable (")) <= 2, server.log  # lost, then refused
    assert not [line for line in during if "get_user_data" in line or "get_server_data" in line]
