"""The plugin's settings: ``DBACK_POSTGRES_*`` variables declared through the settings API.

One frozen value read once per plugin instance, so a test can run two servers against two
databases and a bad value is reported by name before anything connects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from dback_core import SettingsError
from dback_core.plugin.settings import Setting, read

DSN_ENV = "DBACK_POSTGRES_DSN"


def _check_dsn(dsn: str) -> None:
    """A postgresql:// URL whose every ``host:port`` (asyncpg takes several) has a numeric
    port; asyncpg would otherwise fail on every connection attempt with a bare ``int()``
    error."""
    if urlsplit(dsn).scheme not in {"postgres", "postgresql"}:
        raise ValueError("must be a postgresql:// URL (postgresql://user@host:5432/dbname)")
    for host in urlsplit(dsn).netloc.rpartition("@")[2].split(","):
        _host, colon, port = host.rpartition("]")[2].rpartition(":")
        if colon and port and not port.isdigit():
            raise ValueError(f"has a port that is not a number: {port!r}")


SETTINGS = (
    Setting(
        DSN_ENV,
        str,
        None,
        "postgresql://user:password@host:5432/dbname; required (its password is never logged)",
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
            keepalive=values["DBACK_POSTGRES_KEEPALIVE"],
            chat_replay=values["DBACK_POSTGRES_CHAT_REPLAY"],
        )

    @property
    def where(self) -> str:
        """The DSN without its password or query string (which may hold one), for log lines.

        The hosts are copied as written rather than parsed: asyncpg accepts several
        (``host1:5432,host2:5433``), which ``urlsplit`` cannot turn into one port.
        """
        parts = urlsplit(self.dsn)
        hosts = parts.netloc.rpartition("@")[2] or "localhost"
        user = f"{parts.username}@" if parts.username else ""
        return f"postgresql://{user}{hosts}{parts.path}"
