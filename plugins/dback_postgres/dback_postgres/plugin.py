"""The PostgreSQL plugin's hooks. One instance per server, so each server has its own pool.

Settings (environment) are described in the plugin's README; without ``DBACK_POSTGRES_DSN``
the plugin reports itself as not configured and stays out of the way.
"""

from __future__ import annotations

from typing import Any

from dback_core import AccessRefused, NotConfigured, Unavailable, hookimpl
from dback_core.plugin.fairness import FairThreadPool, TurnRefused
from dback_core.plugin.health import FAILED
from dback_core.plugin.host import PluginHost
from dback_postgres import queries
from dback_postgres.commands import postgres
from dback_postgres.database import DATABASE_ERRORS, Database, SchemaBehind, describe
from dback_postgres.diagnosis import diagnose
from dback_postgres.library_logs import quiet_asyncpg_tracebacks
from dback_postgres.listener import ChangeListener
from dback_postgres.passwords import verify_password
from dback_postgres.settings import DSN_ENV, SETTINGS, PostgresSettings

#: Password checks running at once: each costs scrypt's memory and CPU in a worker thread,
#: so a flood of wrong passwords queues here instead of taking every core. A hard bound: a
#: check whose caller gave up keeps its thread until scrypt is done.
PASSWORD_CHECKS = 2
#: Checks one address may have running or waiting; one more is refused at once. The queues
#: are served in turn, so another address's check waits for at most one of each.
CHECKS_PER_ADDRESS = 3
BUSY = "Too many password checks from your address at once; please try again in a moment."


class PostgresPlugin:
    """Guilds and members from PostgreSQL, kept live by LISTEN/NOTIFY."""

    dback_settings = SETTINGS
    dback_no_guilds_hint = (
        'its servers table is empty: insert a guild (psql "$DBACK_POSTGRES_DSN" -c "INSERT '
        "INTO servers (server_id, name) VALUES ('232769614004748288', 'My guild')\") and "
        "members into users; it is served at once, without a restart"
    )

    def __init__(self) -> None:
        settings = PostgresSettings.from_env()
        if settings is None:
            raise NotConfigured(f"set {DSN_ENV} to a postgresql:// URL")
        quiet_asyncpg_tracebacks()
        self.settings = settings
        self.host: PluginHost | None = None
        self._fresh()

    def _fresh(self) -> None:
        """A new pool, listener and password threads. ``shutdown`` closes them for good, and
        a plugin put on standby (``hold_plugins``) and released again starts over with new
        ones: nothing of the last run - a connection still LISTENing, a pool an abandoned
        task holds - can deliver anything once it was stopped."""
        self.database = Database(self.settings)
        self.listener = ChangeListener(
            self.database, self._report_health, self._resume_position, self._chat_lost
        )
        self._password_checks = FairThreadPool(
            PASSWORD_CHECKS, CHECKS_PER_ADDRESS, name="dback-postgres-password"
        )
        self._closed = False

    def _report_health(self, status: str, reason: str | None) -> None:
        if self.host is not None:
            self.host.report_health(status, reason)

    def _resume_position(self) -> int | None:
        if self.host is None:
            return None
        return self.host.resume_position(queries.CHAT_SOURCE)

    def _chat_lost(self, count: int, reason: str) -> None:
        if self.host is not None:
            self.host.chat_lost(count, reason)

    @hookimpl
    async def startup(self, host: PluginHost) -> None:
        """Open the pool now if the database is there. If not, report why - ``unavailable``
        (``/readyz`` answers 503) while it cannot be reached, ``failed`` with the fix when
        only its operator can help - and let the listener keep trying (and log it)."""
        self.host = host
        if self._closed:
            self._fresh()
        try:
            await self.database.ensure_ready()
        except SchemaBehind as error:
            self._report_health(FAILED, str(error))
        except DATABASE_ERRORS as error:
            trouble = diagnose(error, self.database.settings)
            self._report_health(trouble.status, trouble.reason)

    @hookimpl
    async def shutdown(self) -> None:
        self._closed = True
        self._password_checks.close()
        await self.listener.close()
        await self.database.close()

    @hookimpl
    async def get_server_data(self, server_id: str | None) -> dict[str, dict[str, Any]] | None:
        rows = await self._fetch(queries.SERVERS)
        if rows is None:
            return None
        servers = {row["server_id"]: queries.server_record(row) for row in rows}
        if server_id is not None:
            return {server_id: servers[server_id]} if server_id in servers else None
        return servers

    @hookimpl
    async def get_user_data(self, server_id: str) -> dict[str, dict[str, Any]] | None:
        rows = await self._fetch(queries.USERS, server_id)
        if not rows:
            return None
        return {row["user_id"]: queries.user_record(row) for row in rows}

    @hookimpl
    async def get_client_id(self, server_id: str) -> str | None:
        rows = await self._fetch(queries.CLIENT_ID, server_id)
        return rows[0]["client_id"] if rows else None

    @hookimpl
    async def authorize(
        self, server_id: str, credentials: dict[str, Any], address: str
    ) -> bool | None:
        """Check a password against the guild's ``password_hash``; no opinion (None) for a
        guild without one, or for a client that sent no password (a Discord login, say).

        The core's guessing throttle has allowed the check already; the scrypt work is
        shared fairly between addresses, so a flood from one address cannot hold up
        another's login."""
        password = credentials.get("password")
        if not isinstance(password, str) or not password:
            return None
        rows = await self._fetch(queries.PASSWORD_HASH, server_id)
        if not rows or rows[0]["password_hash"] is None:
            return None
        try:
            return await self._password_checks.run(
                address, verify_password, password, rows[0]["password_hash"]
            )
        except TurnRefused:
            raise AccessRefused(BUSY) from None

    @hookimpl
    def event_sources(self) -> list[Any]:
        return [self.listener.events]

    @staticmethod
    @hookimpl
    def register_commands(cli: Any) -> None:
        """Static, so ``dback postgres migrate`` exists before a DSN is set (it then says so)."""
        cli.add_command(postgres)

    async def _fetch(self, query: str, *args: Any) -> list[Any] | None:
        """Rows, or None before the database was ever ready (nothing to serve yet).

        A failing query once the plugin served raises ``DatabaseUnavailable``, which the
        core counts as a failed call: it keeps the guilds and members it already has rather
        than taking "no answer" for "no guilds".
        """
        if not self.database.ready:
            return None
        try:
            return await self.database.fetch(query, *args)
        except DATABASE_ERRORS as error:
            raise DatabaseUnavailable(
                f"PostgreSQL at {self.database.settings.where} failed: {describe(error)}"
            ) from None


class DatabaseUnavailable(Unavailable):
    """A query failed or timed out; the message says where and why (one log line: the
    listener reports the outage itself)."""
