"""What a database error means for the operator: wait, or act - and then what to do.

A database that is down, restarting or unreachable comes back by itself: the plugin is
``unavailable`` and reconnects quickly. A database that does not exist, a role that does
not exist or may not log in, a wrong password or missing privileges never heal by retrying:
the plugin has ``failed`` until someone changes the database or ``DBACK_POSTGRES_DSN``, and
the reason says what to change. Those are still checked now and then (slowly), so that
fixing the database brings the plugin back without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from dback_core.plugin.health import FAILED, UNAVAILABLE
from dback_postgres.database import describe
from dback_postgres.settings import DSN_ENV, PostgresSettings


@dataclass(frozen=True)
class Trouble:
    """Why the plugin cannot serve: its health status, the reason operators read (with
    the fix when it is theirs to make), and the error alone, for a shorter log line."""

    status: str
    reason: str
    cause: str

    @property
    def needs_operator(self) -> bool:
        """True when retrying cannot help until someone acts (checked slowly meanwhile)."""
        return self.status == FAILED


def diagnose(error: BaseException, settings: PostgresSettings) -> Trouble:
    """The trouble ``error`` (raised connecting to or reading the database) stands for."""
    cause = describe(error)
    fix = _operator_fix(error, settings)
    if fix is None:
        return Trouble(UNAVAILABLE, f"cannot reach PostgreSQL at {settings.where}: {cause}", cause)
    refused = f"PostgreSQL at {settings.where} refused: {str(error).strip()}; {fix}"
    return Trouble(FAILED, refused, cause)


def schema_behind(message: str) -> Trouble:
    """The schema is older than this plugin: ``message`` already says to migrate."""
    return Trouble(FAILED, message, message)


def _operator_fix(error: BaseException, settings: PostgresSettings) -> str | None:
    """What the operator must do about ``error``, or None when waiting is enough."""
    user = _user(settings.user)
    text = str(error)
    if isinstance(error, asyncpg.InvalidCatalogNameError):
        return "run `dback postgres migrate`: it creates the database and its tables"
    if isinstance(error, asyncpg.InvalidPasswordError):
        return (
            f"check the password in {DSN_ENV}, or give the role that password "
            f"(ALTER ROLE {user} PASSWORD '...')"
        )
    if isinstance(error, asyncpg.InvalidAuthorizationSpecificationError):
        if "does not exist" in text:
            return (
                f"create the role (CREATE ROLE {user} LOGIN PASSWORD '...') or name an "
                f"existing one in {DSN_ENV}"
            )
        if "not permitted to log in" in text:
            return f"let it log in (ALTER ROLE {user} LOGIN) or name another role in {DSN_ENV}"
        if "pg_hba.conf" in text:
            return "allow this host and role in pg_hba.conf (then reload PostgreSQL)"
        return f"check the role and password in {DSN_ENV}"
    if isinstance(error, asyncpg.InsufficientPrivilegeError):
        return (
            f"grant the role {user} what it lacks (the role that ran `dback postgres migrate` "
            "owns the tables)"
        )
    return None


def _user(name: str | None) -> str:
    """The DSN's role as SQL would name it (quoted when it must be), for the suggested fix.

    Without a user in the DSN, PostgreSQL uses the operating system's user name, which
    this process cannot know for sure; the fix then names a placeholder.
    """
    if not name:
        return "<role>"
    if name.isidentifier() and name == name.lower():
        return name
    return '"' + name.replace('"', '""') + '"'
