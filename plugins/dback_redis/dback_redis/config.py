"""The plugin's settings: ``DBACK_REDIS_*`` variables declared through the settings API.

Read when the plugin is loaded, so ``dback plugins`` can show the role and the Redis it uses
(never the password) and a typo in the role fails loudly before the server starts.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from dback_core import NotConfigured
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


#: Query-string arguments that redis-py reads as secrets (``unix://...?password=...``).
_SECRET_ARGUMENTS = {"password", "ssl_password"}


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs and ``dback plugins``.

    redis-py takes a password from the user-info part and from the query string alike
    (the usual way for ``unix://`` URLs), so both are masked.
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    query = "&".join(_redacted_argument(argument) for argument in parts.query.split("&"))
    # Not urlunsplit: it turns ``unix:///path`` (empty host) into ``unix:/path``.
    text = f"{parts.scheme}://{netloc}{parts.path}"
    return text + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def _redacted_argument(argument: str) -> str:
    name, separator, _value = argument.partition("=")
    return f"{name}=***" if separator and unquote(name) in _SECRET_ARGUMENTS else argument


def _check_url(url: str) -> None:
    if urlsplit(url).scheme not in _SCHEMES:
        raise ValueError("must start with redis://, rediss:// or unix://")


SETTINGS = (
    Setting(
        URL_ENV,
        str,
        None,
        "redis://host:6379/0, rediss://... or unix://...; required (its password is masked)",
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
