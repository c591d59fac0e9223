"""The plugin's settings, read from ``DBACK_POSTGRES_*`` environment variables.

One frozen value read once per plugin instance, so a test can run two servers against two
databases and a bad value is reported by name before anything connects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from dback_core import SettingsError

DSN_ENV = "DBACK_POSTGRES_DSN"


def _number(environ: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(name, f"must be a number, got {text!r}") from None
    if value < minimum:
        raise SettingsError(name, f"must be at least {minimum:g}, got {text!r}")
    return value


def _check_ports(dsn: str) -> None:
    """Each ``host:port`` of the DSN (asyncpg takes several) must have a numeric port;
    asyncpg would otherwise fail on every connection attempt with a bare ``int()`` error."""
    for host in urlsplit(dsn).netloc.rpartition("@")[2].split(","):
        _host, colon, port = host.rpartition("]")[2].rpartition(":")
        if colon and port and not port.isdigit():
            raise SettingsError(DSN_ENV, f"has a port that is not a number: {port!r}")


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
        environ = os.environ if environ is None else environ
        dsn = environ.get(DSN_ENV, "").strip()
        if not dsn:
            return None
        if urlsplit(dsn).scheme not in {"postgres", "postgresql"}:
            raise SettingsError(
                DSN_ENV, "must be a postgresql:// URL (postgresql://user@host:5432/dbname)"
            )
        _check_ports(dsn)
        pool_min = int(_number(environ, "DBACK_POSTGRES_POOL_MIN", cls.pool_min, 0))
        pool_max = int(_number(environ, "DBACK_POSTGRES_POOL_MAX", cls.pool_max, 1))
        if pool_min > pool_max:
            raise SettingsError(
                "DBACK_POSTGRES_POOL_MIN", "must not exceed DBACK_POSTGRES_POOL_MAX"
            )
        return cls(
            dsn=dsn,
            pool_min=pool_min,
            pool_max=pool_max,
            timeout=_number(environ, "DBACK_POSTGRES_TIMEOUT", cls.timeout, 0.1),
            retry_max=_number(environ, "DBACK_POSTGRES_RETRY_MAX", cls.retry_max, 0.1),
            keepalive=_number(environ, "DBACK_POSTGRES_KEEPALIVE", cls.keepalive, 0.1),
            chat_replay=_number(environ, "DBACK_POSTGRES_CHAT_REPLAY", cls.chat_replay, 0),
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
