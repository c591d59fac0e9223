"""A PostgreSQL database of one test's (or one soak's) own, and the guild seeded into it.

Shared by the PostgreSQL plugin's tests, the Redis plugin's process tests and the soak, so
that each creates, seeds and drops its database the same way: a unique name, the plugin's
own migrations, and a drop that succeeds even with connections still open to it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from dback_postgres import migrations
from tests.support.postgres_passwords import ADMIN_DSN


def dsn_for(database: str, port: int | None = None) -> str:
    """The admin DSN pointed at another database (and optionally another port)."""
    parts = urlsplit(ADMIN_DSN)
    netloc = parts.netloc
    if port is not None:
        netloc = f"{netloc.rsplit(':', 1)[0] if parts.port else netloc}:{port}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, ""))


@contextlib.asynccontextmanager
async def fresh_database(prefix: str = "dback_test") -> AsyncIterator[str]:
    """A new, empty database named ``prefix`` and a unique suffix; its name. Dropped
    afterwards, even with connections still open to it or refused by the test."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def member_uid(server_id: str, index: int) -> str:
    """The user id ``seed_guild`` gives the ``index``-th member of ``server_id``."""
    return f"{server_id[:6]}{index:08d}"


async def seed_guild(
    connection: asyncpg.Connection,
    server_id: str = "232769614004748288",
    name: str = "D-Base",
    members: int = 3,
    is_default: bool = True,
    username: str = "member {}",
) -> list[str]:
    """Insert a guild and ``members`` members, online, each named ``username`` with its
    index; return their user ids."""
    await connection.execute(
        "INSERT INTO servers (server_id, name, is_default) VALUES ($1, $2, $3)",
        server_id,
        name,
        is_default,
    )
    uids = [member_uid(server_id, index) for index in range(members)]
    await connection.copy_records_to_table(
        "users",
        records=[
            (uid, server_id, username.format(index), "online", "#5865f2")
            for index, uid in enumerate(uids)
        ],
        columns=["user_id", "server_id", "username", "status", "role_color"],
    )
    return uids


@contextlib.asynccontextmanager
async def guild_database(
    prefix: str, server_id: str, name: str, members: int, username: str = "member {}"
) -> AsyncIterator[str]:
    """A fresh database (``fresh_database``), migrated, with one default guild and its
    members (``seed_guild``); its name."""
    async with fresh_database(prefix) as database:
        connection = await asyncpg.connect(dsn_for(database))
        try:
            await migrations.migrate(connection)
            await seed_guild(connection, server_id, name, members, username=username)
        finally:
            await connection.close()
        yield database


async def guild_members(dsn: str, server_id: str) -> dict[str, tuple[str, str]]:
    """uid -> (status, username) of the guild's members as PostgreSQL has them now: what
    every viewer must end up showing."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT user_id, status, username FROM users WHERE server_id = $1", server_id
        )
    finally:
        await connection.close()
    return {row["user_id"]: (row["status"], row["username"]) for row in rows}
