"""The connection pool, and whether the database is ready to be read.

The pool is opened by the plugin's ``startup`` hook when PostgreSQL is reachable; when it is
not, the server starts anyway and the listener keeps calling ``ensure_ready`` with backoff.
Until the pool is open and the schema current, ``ready`` is False and the hooks answer None,
so other plugins (or nobody) serve and no join waits on a database that is not there.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from dback_postgres import migrations
from dback_postgres.settings import PostgresSettings

log = logging.getLogger(__name__)

#: What a lost connection raises through asyncpg: the statement never ran or its answer
#: was lost, so a read can simply be sent again on another connection. asyncpg's pool raises
#: ``InternalClientError`` when a connection is killed under it while being handed out.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.exceptions.AdminShutdownError,
)

#: What a broken, refused or slow database raises through asyncpg: all of it is transient,
#: retried by the listener and counted as "no answer" by the hooks.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    *CONNECTION_LOST,
    TimeoutError,
    asyncpg.PostgresError,
)


def describe(error: BaseException) -> str:
    """``Type: message`` for a log line; some errors (timeouts) carry no message of their own."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class SchemaBehind(RuntimeError):
    """The database has not been migrated to the version this plugin needs."""


class Database:
    """An asyncpg pool that is opened late, checked, and closed once."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self.pool: asyncpg.Pool | None = None
        self.ready = False

    async def ensure_ready(self) -> None:
        """Open the pool and check the schema version; raise what stands in the way."""
        if self.ready:
            return
        if self.pool is None:
            self.pool = await asyncpg.create_pool(
                **self.settings.connect_args(),
                min_size=self.settings.pool_min,
                max_size=self.settings.pool_max,
                timeout=self.settings.timeout,
                command_timeout=self.settings.timeout,
            )
        async with self.pool.acquire() as connection:
            version = await migrations.current_version(connection)
        if version < migrations.LATEST_VERSION:
            raise SchemaBehind(
                f"the schema at {self.settings.where} is at version {version}, this plugin "
                f"needs {migrations.LATEST_VERSION}: run `dback postgres migrate`"
            )
        if version > migrations.LATEST_VERSION:
            log.warning(
                "the schema at %s is at version %d, newer than this plugin knows (%d); "
                "upgrade dback-postgres",
                self.settings.where,
                version,
                migrations.LATEST_VERSION,
            )
        self.ready = True
        log.info("PostgreSQL at %s is ready (schema version %d)", self.settings.where, version)

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        """Rows of ``query``; raises when the pool is not open.

        A read that fails because its connection was lost (killed, or the database
        restarted) is sent once more: the pool replaces the dead connection, and one killed
        connection should not make a join come back empty.
        """
        if self.pool is None:
            raise asyncpg.InterfaceError("the pool is not open")
        rows: list[Any]
        try:
            rows = await self.pool.fetch(query, *args)
        except TimeoutError:
            raise  # an OSError too, but a slow database is not helped by asking twice
        except CONNECTION_LOST as error:
            log.debug("a pooled connection was lost (%s); reading again", describe(error))
            rows = await self.pool.fetch(query, *args)
        return rows

    async def close(self) -> None:
        self.ready = False
        pool, self.pool = self.pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.settings.timeout)
            except DATABASE_ERRORS as error:
                log.warning("closing the PostgreSQL pool: %s", describe(error))
                pool.terminate()
