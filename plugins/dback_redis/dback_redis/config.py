"""The plugin's settings: ``DBACK_REDIS_*`` variables declared through the settings API.

Read when the plugin is loaded, so ``dback plugins`` can show the role and the Redis it uses
(never the password) and a typo in the role fails loudly before the server starts.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from redis.asyncio.connection import parse_url as redis_reads

from dback_core import NotConfigured
from dback_core.plugin.credentials import find, parse_url
from dback_core.plugin.settings import Setting, read
from dback_redis.chat import ChatLimits

URL_ENV = "DBACK_REDIS_URL"
ROLE_ENV = "DBACK_REDIS_ROLE"
PREFIX_ENV = "DBACK_REDIS_PREFIX"
CHAT_HISTORY_ENV = "DBACK_REDIS_CHAT_HISTORY"
CHAT_REPLAY_ENV = "DBACK_REDIS_CHAT_REPLAY_SECONDS"

LEASE_ENV = "DBACK_REDIS_LEASE_SECONDS"

PUBLISHER = "publisher"
EDGE = "edge"
AUTO = "auto"
ROLES = (AUTO, PUBLISHER, EDGE)
_SCHEMES = {"redis", "rediss", "unix"}


def redacted(url: str) -> str:
    """``url`` with its password masked (user-info or ``?password=``), for logs and
    ``dback plugins``: hosts, port and database stay readable."""
    return find(url).text


def client_url(url: str) -> tuple[str, str | None]:
    """``url`` without its password, and the password: redis-py is given the password
    apart (``Redis.from_url(url, password=...)``), so no error or ``repr`` of its
    connections can quote it, and a password holding ``@``, ``/`` or a space reaches Redis
    whole (redis-py's own parsing would cut it at the first of them)."""
    parts = parse_url(url)
    if parts is None:
        return url, None
    return parts.without_password().render(masked=False), parts.password_value or None


def _check_url(url: str) -> None:
    """Refuse what redis-py would refuse on every connection attempt, and what it would read
    quietly otherwise: a database that is not a number (``redis://host:6379/abc``) is
    database 0 to redis-py, so deployments meant to be apart would share one."""
    parts = parse_url(url)
    if parts is None or parts.scheme not in _SCHEMES:
        raise ValueError("must start with redis://, rediss:// or unix://")
    database = parts.database.strip("/")
    if parts.scheme != "unix" and database and not database.isdigit():
        raise ValueError(
            f"names the database {database!r}, which is not a number: Redis databases are "
            "numbered (redis://host:6379/0)"
        )
    try:
        redis_reads(client_url(url)[0])
    except ValueError as error:
        raise ValueError(f"is not a URL redis-py accepts: {error}") from None


SETTINGS = (
    Setting(
        URL_ENV,
        str,
        None,
        "redis://host:6379/0, rediss://... or unix://...; required (its password is masked)",
        url=True,
        check=_check_url,
    ),
    Setting(
        ROLE_ENV,
        str,
        AUTO,
        "auto: elected through a lease in Redis; publisher: runs the providers and publishes; "
        "edge: serves clients from the bus",
        choices=ROLES,
    ),
    Setting(
        LEASE_ENV,
        float,
        4.0,
        "auto only: lifetime in seconds of the elected publisher's lease",
        minimum=1,
    ),
    Setting(PREFIX_ENV, str, "dback", "namespace for keys and channels"),
    Setting(
        CHAT_HISTORY_ENV,
        int,
        ChatLimits.history,
        "chat messages kept for replay to processes that missed them",
        minimum=1,
    ),
    Setting(
        CHAT_REPLAY_ENV,
        float,
        ChatLimits.replay_seconds,
        "seconds after which chat is no longer replayed",
        minimum=0,
    ),
)


@dataclass(frozen=True)
class RedisConfig:
    """Where Redis is, what this process does on the bus, and the key namespace."""

    url: str
    role: str = AUTO
    prefix: str = "dback"
    #: Seconds the elected publisher's lease lasts without renewal: how long a dead
    #: publisher goes unnoticed at most (``auto`` role only).
    lease_seconds: float = 4.0
    chat: ChatLimits = field(default_factory=ChatLimits)
    #: Identifies this process on the bus; its own messages are ignored.
    process_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RedisConfig:
        values = read(SETTINGS, environ)
        url = values[URL_ENV]
        if url is None:
            raise NotConfigured(f"set {URL_ENV} (for example redis://127.0.0.1:6379/0)")
        chat = ChatLimits(history=values[CHAT_HISTORY_ENV], replay_seconds=values[CHAT_REPLAY_ENV])
        return cls(
            url=url,
            role=values[ROLE_ENV],
            prefix=values[PREFIX_ENV],
            chat=chat,
            lease_seconds=values[LEASE_ENV],
        )

    @property
    def client_name(self) -> str:
        """The CLIENT SETNAME of this process's connections (no spaces allowed)."""
        return f"{self.prefix}:{self.role}:{self.process_id}"

    def describe(self) -> str:
        return f"role={self.role} url={redacted(self.url)} prefix={self.prefix}"
