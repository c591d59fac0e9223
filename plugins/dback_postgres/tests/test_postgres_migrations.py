"""The schema: created from an empty database, re-run safely, checked at startup, and the
``dback postgres`` commands that drive it, run as a user runs them."""

from __future__ import annotations

import logging
import uuid

import asyncpg
import pytest
from click.testing import CliRunner
from postgres_helpers import ADMIN_DSN, dsn_for, run_dback, wait_until

from dback_core.plugin.health import FAILED, SERVING
from dback_core.testing import Client, running_server
from dback_postgres import migrations
from dback_postgres.commands import postgres


async def columns(connection: asyncpg.Connection, table: str) -> dict[str, str]:
    rows = await connection.fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1",
        table,
    )
    return {row["column_name"]: row["data_type"] for row in rows}


@pytest.mark.postgres
async def test_migrate_from_empty_creates_the_seed_tables_and_a_rerun_changes_nothing(dsn):
    connection = await asyncpg.connect(dsn)
    try:
        assert await migrations.current_version(connection) == 0
        applied = await migrations.migrate(connection)
        assert [m.version for m in applied] == [1, 2, 3, 4, 5, 6]
        assert await migrations.current_version(connection) == migrations.LATEST_VERSION

        servers = await columns(connection, "servers")
        assert {"server_id", "name", "passworded", "is_default", "enabled"} <= set(servers)
        assert servers["password_hash"] == "text"
        assert servers["server_id"] == "text"
        users = await columns(connection, "users")
        assert set(users) == {"user_id", "server_id", "username", "status", "role_color"}
        assert users["user_id"] == users["server_id"] == "text"

        assert await migrations.migrate(connection) == []
        recorded = await connection.fetchval("SELECT count(*) FROM dback_schema_version")
        assert recorded == len(migrations.MIGRATIONS)
    finally:
        await connection.close()


@pytest.mark.postgres
async def test_constraints_reject_bad_rows(db):
    await db.execute("INSERT INTO servers (server_id, name) VALUES ('1', 'one')")
    for bad in [
        "INSERT INTO users VALUES ('u', '1', 'name', 'asleep', NULL)",
        "INSERT INTO users VALUES ('u', '1', 'name', 'online', 'red')",
        "INSERT INTO users VALUES ('u', 'no-such-guild', 'name', 'online', NULL)",
    ]:
        try:
            await db.execute(bad)
        except asyncpg.IntegrityConstraintViolationError:
            continue
        raise AssertionError(f"accepted: {bad}")


@pytest.mark.postgres
async def test_the_cli_migrates_and_reports_status(dsn):
    behind = run_dback("postgres", "status", dsn=dsn)
    assert behind.returncode == 1, behind.stderr
    assert "schema version: 0" in behind.stdout
    assert "pending 6:" in behind.stdout

    first = run_dback("postgres", "migrate", dsn=dsn)
    assert first.returncode == 0, first.stderr
    assert "applied 1:" in first.stdout and "applied 6:" in first.stdout

    again = run_dback("postgres", "migrate", dsn=dsn)
    assert again.returncode == 0, again.stderr
    assert "applied" not in again.stdout

    current = run_dback("postgres", "status", dsn=dsn)
    assert current.returncode == 0, current.stderr
    assert f"schema version: {migrations.LATEST_VERSION}" in current.stdout
    assert "pending" not in current.stdout


def test_migrate_without_a_dsn_says_what_to_set():
    result = run_dback("postgres", "migrate", dsn=None)
    assert result.returncode == 1
    assert "no database given: set DBACK_POSTGRES_DSN" in result.stderr


def test_migrate_against_an_unreachable_database_is_a_clear_error():
    result = CliRunner().invoke(
        postgres, ["migrate", "--dsn", "postgresql://postgres@127.0.0.1:1/none"]
    )
    assert result.exit_code != 0
    assert "cannot connect to postgresql://postgres@127.0.0.1:1/none" in result.output


def test_without_a_dsn_the_plugin_is_listed_as_not_configured():
    result = run_dback("plugins", dsn=None)
    assert result.returncode == 0, result.stderr
    assert "dback-postgres 0.1.0: not configured (set DBACK_POSTGRES_DSN" in result.stdout


@pytest.mark.postgres
async def test_a_schema_behind_is_logged_and_served_once_migrated(postgres_env, dsn, caplog):
    caplog.set_level(logging.INFO, logger="dback_postgres")
    async with running_server() as server:
        assert "run `dback postgres migrate`" in caplog.text
        assert server.directory.servers == {}
        health = server.plugins.find("dback-postgres").health
        assert health.status == FAILED and "dback postgres migrate" in health.reason
        connection = await asyncpg.connect(dsn)
        try:
            await migrations.migrate(connection)
            await connection.execute(
                "INSERT INTO servers (server_id, name, is_default) VALUES ('42', 'Late', true)"
            )
        finally:
            await connection.close()
        await wait_until(lambda: "42" in server.directory.servers)
        assert health.status == SERVING
        async with Client(server) as client:
            assert client.server_list == {
                "42": {"id": "42", "name": "Late", "passworded": False, "default": True}
            }


@pytest.mark.postgres
async def test_migrate_creates_a_missing_database():
    """The README's steps on a fresh server: the DSN's database does not exist yet."""
    name = f"dback_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        result = run_dback("postgres", "migrate", dsn=dsn_for(name))
        assert result.returncode == 0, result.stderr
        assert f"created database {name}" in result.stdout
        assert f"/{name} is at version {migrations.LATEST_VERSION}" in result.stdout
        again = run_dback("postgres", "migrate", dsn=dsn_for(name))
        assert again.returncode == 0 and "created" not in again.stdout
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
