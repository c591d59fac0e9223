"""``dback postgres migrate``, ``status`` and ``set-password``.

The commands read the DSN when they run, not when they are registered, so they give a clear
error (rather than a traceback or a silent no-op) when ``DBACK_POSTGRES_DSN`` is not set.
``migrate`` creates the DSN's database when the server has none of that name, so a fresh
PostgreSQL needs nothing but ``dback postgres migrate``.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from typing import Any

import asyncpg
import click

from dback_postgres import migrations, queries
from dback_postgres.database import DATABASE_ERRORS, describe
from dback_postgres.passwords import hash_password
from dback_postgres.settings import DSN_ENV, PostgresSettings

_DSN_OPTION = click.option(
    "--dsn",
    envvar=DSN_ENV,
    help=f"postgresql:// URL of the database [env: {DSN_ENV}]",
)


def _settings(dsn: str | None) -> PostgresSettings:
    try:
        settings = PostgresSettings.from_env({DSN_ENV: dsn or ""})
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    if settings is None:
        raise click.ClickException(
            f"no database given: set {DSN_ENV} (for example "
            "postgresql://postgres@127.0.0.1:5432/dback) or pass --dsn"
        )
    return settings


async def _connect(settings: PostgresSettings) -> Any:
    try:
        return await asyncpg.connect(**settings.connect_args(), timeout=settings.timeout)
    except DATABASE_ERRORS as error:
        raise click.ClickException(
            f"cannot connect to {settings.where}: {describe(error)}"
        ) from error


async def _create_database(settings: PostgresSettings) -> bool:
    """Create the DSN's database through the server's ``postgres`` database; False when the
    DSN names none (PostgreSQL then uses the user's name, which is not ours to create)."""
    name = settings.database
    if not name:
        return False
    try:
        connection = await asyncpg.connect(
            **settings.connect_args(path="/postgres"), timeout=settings.timeout
        )
        try:
            quoted = name.replace('"', '""')
            await connection.execute(f'CREATE DATABASE "{quoted}"')
        finally:
            await connection.close()
    except DATABASE_ERRORS as error:
        raise click.ClickException(
            f"database {name!r} does not exist and could not be created: {describe(error)}"
        ) from error
    click.echo(f"created database {name}")
    return True


async def _migrate(settings: PostgresSettings) -> None:
    try:
        connection = await asyncpg.connect(**settings.connect_args(), timeout=settings.timeout)
    except asyncpg.InvalidCatalogNameError:
        if not await _create_database(settings):
            raise
        connection = await _connect(settings)
    except DATABASE_ERRORS as error:
        raise click.ClickException(
            f"cannot connect to {settings.where}: {describe(error)}"
        ) from error
    try:
        applied = await migrations.migrate(connection)
    except asyncpg.PostgresError as error:
        raise click.ClickException(f"migration failed and was rolled back: {error}") from error
    finally:
        await connection.close()
    for migration in applied:
        click.echo(f"applied {migration.version}: {migration.description}")
    click.echo(f"schema at {settings.where} is at version {migrations.LATEST_VERSION}")


async def _status(settings: PostgresSettings) -> bool:
    connection = await _connect(settings)
    try:
        version = await migrations.current_version(connection)
        click.echo(f"database: {settings.where}")
        click.echo(f"schema version: {version} (this plugin needs {migrations.LATEST_VERSION})")
        for migration in migrations.MIGRATIONS:
            if migration.version > version:
                click.echo(f"pending {migration.version}: {migration.description}")
        if version >= 1:
            servers = await connection.fetchval("SELECT count(*) FROM servers WHERE enabled")
            users = await connection.fetchval("SELECT count(*) FROM users")
            click.echo(f"enabled guilds: {servers}, members: {users}")
    finally:
        await connection.close()
    return version >= migrations.LATEST_VERSION


async def _set_password_hash(settings: PostgresSettings, guild: str, hashed: str | None) -> None:
    connection = await _connect(settings)
    try:
        version = await migrations.current_version(connection)
        if version < migrations.LATEST_VERSION:
            raise click.ClickException(
                f"the schema at {settings.where} is at version {version}: run "
                "`dback postgres migrate` first"
            )
        result = await connection.execute(queries.SET_PASSWORD_HASH, guild, hashed)
    finally:
        await connection.close()
    if result == "UPDATE 0":
        raise click.ClickException(f"no guild {guild!r} in the servers table")


def _read_password(guild: str, from_stdin: bool) -> str:
    """The new password: typed twice at a prompt (hidden), or the first line of stdin.

    Without a terminal there is nobody to prompt: a pipe, a script or a CI job would get
    Python's "cannot control echo" warning and ``Aborted!``, so they are told about
    ``--stdin`` instead."""
    password: str
    if from_stdin:
        # sys.stdin, not click.get_text_stream: deprecated since Click 8.5
        password = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        raise click.ClickException(
            "standard input is not a terminal, so nobody can be asked for the password: "
            "pass --stdin to read it from there (printf '%s\\n' \"$PASSWORD\" | dback postgres "
            f"set-password {shlex.quote(guild)} --stdin)"
        )
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise click.ClickException("the password is empty")
    return password


@click.group("postgres")
def postgres() -> None:
    """The PostgreSQL provider: create or upgrade its schema, show its state."""


@postgres.command()
@_DSN_OPTION
def migrate(dsn: str | None) -> None:
    """Create or upgrade the schema; safe to run again."""
    asyncio.run(_migrate(_settings(dsn)))


@postgres.command()
@_DSN_OPTION
def status(dsn: str | None) -> None:
    """Show the schema version and pending migrations; exit 1 when the schema is behind."""
    if not asyncio.run(_status(_settings(dsn))):
        raise SystemExit(1)


@postgres.command("set-password")
@click.argument("guild")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--clear", is_flag=True, help="Remove the password: the guild becomes public.")
@_DSN_OPTION
def set_password(guild: str, from_stdin: bool, clear: bool, dsn: str | None) -> None:
    """Set the password of guild GUILD (its server_id); only a scrypt hash is stored.

    A guild with a password is passworded: clients must send it to see its members.
    """
    settings = _settings(dsn)
    hashed = None if clear else hash_password(_read_password(guild, from_stdin))
    asyncio.run(_set_password_hash(settings, guild, hashed))
    if clear:
        click.echo(f"guild {guild} has no password now and is public")
    else:
        click.echo(f"guild {guild} is passworded; its new password is set")
