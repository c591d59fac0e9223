"""Fixtures for the PostgreSQL plugin's tests: a fresh database per test on the real server.

Every test gets its own database (created with a unique name, dropped afterwards, even when
connections to it are still open), so tests never see each other's rows or triggers. The
server is the machine's PostgreSQL; ``DBACK_POSTGRES_TEST_ADMIN_DSN`` points elsewhere.
There is no skip: without PostgreSQL these tests fail, as CI must.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from postgres_helpers import ADMIN_DSN, dsn_for

from dback_postgres import migrations
from tests.support.postgres_database import fresh_database


@pytest.fixture(autouse=True)
def without_the_shell_s_settings(dback_environ):
    """None of the developer's DBACK_* variables reach these tests (``dback_environ`` is
    dback-core's pytest plugin); each test sets what it needs."""


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """The name of a fresh, empty database; dropped after the test."""
    async with fresh_database() as name:
        yield name


@pytest.fixture
def dsn(database: str) -> str:
    return dsn_for(database)


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A migrated database and a connection to it for the test to change rows with."""
    connection = await asyncpg.connect(dsn)
    await migrations.migrate(connection)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def postgres_env(monkeypatch, dsn: str) -> str:
    """Load only this plugin, against the test's database, with quick retries."""
    monkeypatch.setenv("DBACK_PLUGINS", "dback-postgres")
    monkeypatch.delenv("DBACK_DISABLE_PLUGINS", raising=False)
    monkeypatch.setenv("DBACK_POSTGRES_DSN", dsn)
    monkeypatch.setenv("DBACK_POSTGRES_RETRY_MAX", "0.5")
    monkeypatch.setenv("DBACK_POSTGRES_TIMEOUT", "5")
    return dsn


@pytest.fixture
async def admin() -> AsyncIterator[asyncpg.Connection]:
    """A connection to the maintenance database, for what cannot be done from inside."""
    connection = await asyncpg.connect(ADMIN_DSN)
    try:
        yield connection
    finally:
        await connection.close()
