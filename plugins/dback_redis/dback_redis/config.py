"""The plugin's settings: ``DBACK_REDIS_*`` variables declared through the settings API.

Read when the plugin is loaded, so ``dback plugins`` can show the role and the Redis it uses
(never the password) and a typo in the role fails loudly before the server starts.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import quote

from redis.asyncio.connection import parse_url as redis_reads

from dback_core import NotConfigured
from dback_core.plugin.credentials import find, parse_url
from dback_core.plugin.errors import SettingsError
from dback_core.plugin.settings import Setting, read
from dback_redis import sentinel
from dback_redis.chat import ChatLimits

URL_ENV = "DBACK_REDIS_URL"
ROLE_ENV = "DBACK_REDIS_ROLE"
PREFIX_ENV = "DBACK_REDIS_PREFIX"
CHAT_HISTORY_ENV = "DBACK_REDIS_CHAT_HISTORY"
CHAT_REPLAY_ENV = "DBACK_REDIS_CHAT_REPLAY_SECONDS"

LEASE_ENV = "DBACK_REDIS_LEASE_SECONDS"
SENTINELS_ENV = "DBACK_REDIS_SENTINELS"
SENTINEL_MASTER_ENV = "DBACK_REDIS_SENTINEL_MASTER"
SENTINEL_PASSWORD_ENV = "DBACK_REDIS_SENTINEL_PASSWORD"

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
        "redis://host:6379/0, rediss://... or unix://...; required unless sentinels are set "
        "(its password is masked)",
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
    Setting(
        SENTINELS_ENV,
        str,
        None,
        "Redis Sentinel addresses host:port,host:port (or redis://[user:password@]host:port,...;"
        " the password is masked): the master is found through them",
        url=True,
        check=sentinel.check,
    ),
    Setting(
        SENTINEL_MASTER_ENV,
        str,
        sentinel.DEFAULT_MASTER,
        "with sentinels: the name of the master they watch",
    ),
    Setting(
        SENTINEL_PASSWORD_ENV,
        str,
        None,
        "with sentinels: the sentinels' own password (their requirepass)",
        secret=True,
    ),
)


def _sentinels(values: Mapping[str, object]) -> sentinel.Sentinels | None:
    """The sentinels the settings name, or None; their password from the URL or from its
    own setting (not both)."""
    text = values[SENTINELS_ENV]
    if not isinstance(text, str):
        return None
    found = sentinel.parse(text)
    password = values[SENTINEL_PASSWORD_ENV]
    if isinstance(password, str) and found.password and password != found.password:
        raise SettingsError(
            SENTINEL_PASSWORD_ENV, f"differs from the password in {SENTINELS_ENV}: give one"
        )
    master = str(values[SENTINEL_MASTER_ENV])
    given = password if isinstance(password, str) else None
    return replace(found, master=master, password=found.password or given)


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
    #: Where to ask for the master (None: ``url`` names it).
    sentinels: sentinel.Sentinels | None = None
    #: Identifies this process on the bus; its own messages are ignored.
    process_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RedisConfig:
        values = read(SETTINGS, environ)
        url = values[URL_ENV]
        sentinels = _sentinels(values)
        if url is None and sentinels is not None:
            # Database 0, no password: the URL's host and port are not used with sentinels.
            url = f"redis://{quote(sentinels.master, safe='')}/0"
        if url is None:
            raise NotConfigured(f"set {URL_ENV} (for example redis://127.0.0.1:6379/0)")
        if sentinels is not None and url.startswith("unix:"):
            raise SettingsError(URL_ENV, f"must be redis:// or rediss:// with {SENTINELS_ENV}")
        chat = ChatLimits(history=values[CHAT_HISTORY_ENV], replay_seconds=values[CHAT_REPLAY_ENV])
        return cls(
            url=url,
            role=values[ROLE_ENV],
            prefix=values[PREFIX_ENV],
            chat=chat,
            lease_seconds=values[LEASE_ENV],
            sentinels=sentinels,
        )

    @property
    def client_name(self) -> str:
        """The CLIENT SETNAME of this process's connections (no spaces allowed)."""
        return f"{self.prefix}:{self.role}:{self.process_id}"

    def describe(self) -> str:
        where = f" {self.sentinels.describe()}" if self.sentinels is not None else ""
        return f"role={self.role} url={redacted(self.url)}{where} prefix={self.prefix}"
