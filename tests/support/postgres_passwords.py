"""PostgreSQL asking one role for its password, on a test machine that trusts every local
connection: without this a wrong password would go unnoticed. Shared by the core's secrets
test and the PostgreSQL plugin's tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg

#: A superuser's DSN on the PostgreSQL the tests use.
ADMIN_DSN = os.environ.get(
    "DBACK_POSTGRES_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def dsn_as(role: str, password: str | None, database: str) -> str:
    """The admin DSN with another role (and password, written as given) and database."""
    parts = urlsplit(ADMIN_DSN)
    credentials = role + (f":{password}" if password is not None else "")
    netloc = f"{credentials}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, ""))


#: The advisory lock held while pg_hba.conf carries a test's line: test runs sharing one
#: PostgreSQL (two checkouts, say) take turns instead of undoing each other's line.
HBA_LOCK = 0x6462_6163_6B68_6261


@contextlib.asynccontextmanager
async def password_required(admin: asyncpg.Connection, role: str) -> AsyncIterator[None]:
    """PostgreSQL asks ``role`` (and only it) for its password over TCP while the block runs.

    Test machines trust every local connection, so a wrong password would go unnoticed:
    this puts a ``scram-sha-256`` line for ``role`` first in the server's pg_hba.conf and
    reloads it, and afterwards writes back what was there. Only SQL is used (the admin DSN
    is a superuser's): the file is the server's, wherever it lives.
    """
    await admin.execute("SELECT pg_advisory_lock($1)", HBA_LOCK)
    try:
        path = await admin.fetchval("SHOW hba_file")
        original = await admin.fetchval("SELECT pg_read_file($1)", path)
        line = f"host all {role} 127.0.0.1/32 scram-sha-256"
        await _write_server_file(admin, path, f"{line}\n{original}")
        try:
            await _reload_until(admin, role, asks=True)
            yield
        finally:
            await _write_server_file(admin, path, original)
            await _reload_until(admin, role, asks=False)
    finally:
        await admin.execute("SELECT pg_advisory_unlock($1)", HBA_LOCK)


async def _write_server_file(admin: asyncpg.Connection, path: str, text: str) -> None:
    """Write ``text`` to ``path`` on the database server, byte for byte.

    ``COPY ... TO`` writes one row per line; CSV with a quote and a delimiter that never
    occur leaves each line as it is (no escaping of tabs or backslashes, unlike the text
    format), and a NULL row is an empty line.
    """
    assert text.endswith("\n") and "\x01" not in text and "\x02" not in text
    await admin.execute("CREATE TEMP TABLE IF NOT EXISTS hba_lines (n int, line text)")
    await admin.execute("TRUNCATE hba_lines")
    await admin.executemany(
        "INSERT INTO hba_lines VALUES ($1, NULLIF($2, ''))",
        list(enumerate(text[:-1].split("\n"))),
    )
    quoted = path.replace("'", "''")
    await admin.execute(
        f"COPY (SELECT line FROM hba_lines ORDER BY n) TO '{quoted}' "
        "WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
    )
    assert await admin.fetchval("SELECT pg_read_file($1)", path) == text


async def _reload_until(admin: asyncpg.Connection, role: str, asks: bool) -> None:
    """Reload the configuration, then wait until a new connection as ``role`` is asked for
    its password (``asks``) or no longer is: the postmaster reloads on SIGHUP, soon but not
    before ``pg_reload_conf`` returns."""
    assert await admin.fetchval("SELECT pg_reload_conf()")
    deadline = asyncio.get_running_loop().time() + 10
    while not await _asks_for_password(role, asks):
        assert asyncio.get_running_loop().time() < deadline, "pg_hba.conf was not reloaded"
        await asyncio.sleep(0.1)


async def _asks_for_password(role: str, expected: bool) -> bool:
    try:
        connection = await asyncpg.connect(dsn_as(role, "not-its-password", "postgres"))
    except asyncpg.InvalidPasswordError:
        return expected
    except (asyncpg.PostgresError, OSError):
        return not expected
    await connection.close()
    return not expected
