"""The plugin's settings: ``DBACK_POSTGRES_*`` variables declared through the settings API.

One frozen value read once per plugin instance, so a test can run two servers against two
databases and a bad value is reported by name before anything connects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dback_core import SettingsError
from dback_core.plugin.credentials import URL, parse_url
from dback_core.plugin.settings import Setting, read

DSN_ENV = "DBACK_POSTGRES_DSN"


def _check_dsn(dsn: str) -> None:
    """A postgresql:// URL whose every ``host:port`` (asyncpg takes several) has a numeric
    port; asyncpg would otherwise fail on every connection attempt with a bare ``int()``
    error."""
    parts = parse_url(dsn)
    if parts is None or parts.scheme not in {"postgres", "postgresql"}:
        raise ValueError("must be a postgresql:// URL (postgresql://user@host:5432/dbname)")
    for host in parts.hosts.split(","):
        _host, colon, port = host.rpartition("]")[2].rpartition(":")
        if colon and port and not port.isdigit():
            raise ValueError(f"has a port that is not a number: {port!r}")


SETTINGS = (
    Setting(
        DSN_ENV,
        str,
        None,
        "postgresql://user:password@host:5432/dbname; required (its password is masked)",
        url=True,
        check=_check_dsn,
    ),
    Setting("DBACK_POSTGRES_POOL_MIN", int, 1, "connections the pool keeps open", minimum=0),
    Setting("DBACK_POSTGRES_POOL_MAX", int, 10, "most connections the pool opens", minimum=1),
    Setting(
        "DBACK_POSTGRES_TIMEOUT",
        float,
        5.0,
        "seconds a query or connection attempt may take",
        minimum=0.1,
    ),
    Setting(
        "DBACK_POSTGRES_RETRY_MAX",
        float,
        1.0,
        "ceiling of the doubling delay between reconnection attempts",
        minimum=0.1,
    ),
    Setting(
        "DBACK_POSTGRES_RECHECK_MAX",
        float,
        60.0,
        "ceiling of the doubling delay between checks while the database refuses for a reason "
        "only its operator can fix (no such database or role, wrong password, old schema)",
        minimum=0.1,
    ),
    Setting(
        "DBACK_POSTGRES_KEEPALIVE",
        float,
        15.0,
        "seconds of silence after which the listening connection is checked",
        minimum=0.1,
    ),
    Setting(
        "DBACK_POSTGRES_CHAT_REPLAY",
        float,
        60.0,
        "seconds back that chat missed while reconnecting is still delivered (0: none)",
        minimum=0,
    ),
)


@dataclass(frozen=True)
class PostgresSettings:
    """Where the database is and how patiently to talk to it."""

    dsn: str
    #: Connections the pool keeps open, and the most it opens.
    pool_min: int = 1
    pool_max: int = 10
    #: Seconds a query may run (and a connection attempt may take) before it is given up.
    timeout: float = 5.0
    #: Ceiling, in seconds, of the doubling delay between reconnection attempts. Short, so
    #: the plugin is live again about a second after the database answers; an attempt
    #: against a local database that is down costs one refused connection.
    retry_max: float = 1.0
    #: Ceiling, in seconds, of the doubling delay (from ``retry_max``) between checks while
    #: the database refuses for a reason only its operator can fix: long, since nothing
    #: changes until someone acts, yet short enough that the fix is noticed without a restart.
    recheck_max: float = 60.0
    #: Seconds of silence after which the listening connection is checked with a query.
    keepalive: float = 15.0
    #: Seconds back that chat messages missed while the listener was reconnecting are still
    #: delivered after it is back; 0 delivers none of them.
    chat_replay: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PostgresSettings | None:
        """The settings, or None when no DSN is set (the plugin is then not configured)."""
        values = read(SETTINGS, environ)
        dsn = values[DSN_ENV]
        if dsn is None:
            return None
        if values["DBACK_POSTGRES_POOL_MIN"] > values["DBACK_POSTGRES_POOL_MAX"]:
            raise SettingsError(
                "DBACK_POSTGRES_POOL_MIN", "must not exceed DBACK_POSTGRES_POOL_MAX"
            )
        return cls(
            dsn=dsn,
            pool_min=values["DBACK_POSTGRES_POOL_MIN"],
            pool_max=values["DBACK_POSTGRES_POOL_MAX"],
            timeout=values["DBACK_POSTGRES_TIMEOUT"],
            retry_max=values["DBACK_POSTGRES_RETRY_MAX"],
            recheck_max=values["DBACK_POSTGRES_RECHECK_MAX"],
            keepalive=values["DBACK_POSTGRES_KEEPALIVE"],
            chat_replay=values["DBACK_POSTGRES_CHAT_REPLAY"],
        )

    @property
    def _parts(self) -> URL:
        parts = parse_url(self.dsn)
        assert parts is not None  # checked when read (``_check_dsn``)
        return parts

    @property
    def where(self) -> str:
        """The DSN without its password or query string (which may hold one), for log lines;
        the hosts as written (asyncpg accepts several: ``host1:5432,host2:5433``)."""
        parts = self._parts
        user = f"{parts.user}@" if parts.user else ""
        return f"postgresql://{user}{parts.hosts or 'localhost'}{parts.path}"

    @property
    def user(self) -> str | None:
        """The role the DSN names (decoded), or None."""
        return self._parts.user_value

    def connect_args(self, path: str | None = None) -> dict[str, Any]:
        """asyncpg's ``dsn`` and ``password`` arguments: the password is passed apart from
        the DSN, so no asyncpg error can quote it, and a password holding ``@``, ``:``, ``/``
        or a space reaches PostgreSQL whole (asyncpg's own parsing cuts the user-info at
        its first ``@``). ``path`` names another database on the same server."""
        parts = self._parts.without_password()
        if path is not None:
            parts = parts.with_path(path)
        return {"dsn": parts.render(masked=False), "password": self._parts.password_value}

    @property
    def database(self) -> str:
        """The database the DSN names (decoded), or "" when it names none."""
        return self._parts.database
