"""The plugin's settings, read from ``DBACK_REDIS_*`` environment variables.

Read when the plugin is loaded, so ``dback plugins`` can show the role and the Redis it uses
(never the password) and a typo in the role fails loudly before the server starts.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from dback_core.plugins import NotConfigured, SettingsError
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


def _number(environ: Mapping[str, str], name: str, default: float, whole: bool = False) -> float:
    """A finite number (at least 0, or 1 for a ``whole`` count) from ``environ[name]``, or
    ``default`` when it is unset."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    kind, minimum = ("a whole number", 1) if whole else ("a number", 0)
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        raise SettingsError(name, f"must be {kind}, not {raw!r}") from None
    if not minimum <= value < float("inf"):
        raise SettingsError(name, f"must be {kind} of at least {minimum}, not {raw!r}")
    return value


def _redacted_argument(argument: str) -> str:
    name, separator, _value = argument.partition("=")
    return f"{name}=***" if separator and unquote(name) in _SECRET_ARGUMENTS else argument


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
        environ = os.environ if environ is None else environ
        url = environ.get(URL_ENV, "").strip()
        if not url:
            raise NotConfigured(f"set {URL_ENV} (for example redis://127.0.0.1:6379/0)")
        scheme = urlsplit(url).scheme
        if scheme not in _SCHEMES:
            raise SettingsError(URL_ENV, "must start with redis://, rediss:// or unix://")
        role = environ.get(ROLE_ENV, "").strip().lower() or AUTO
        if role not in ROLES:
            raise SettingsError(ROLE_ENV, f"must be 'auto', 'publisher' or 'edge', not {role!r}")
        lease_seconds = _number(environ, LEASE_ENV, cls.lease_seconds)
        if lease_seconds < 1:
            raise SettingsError(LEASE_ENV, f"must be at least 1 second, not {lease_seconds:g}")
        prefix = environ.get(PREFIX_ENV, "").strip() or "dback"
        chat = ChatLimits(
            history=int(_number(environ, CHAT_HISTORY_ENV, ChatLimits.history, whole=True)),
            replay_seconds=_number(environ, CHAT_REPLAY_ENV, ChatLimits.replay_seconds),
        )
        return cls(url=url, role=role, prefix=prefix, chat=chat, lease_seconds=lease_seconds)

    @property
    def client_name(self) -> str:
        """The CLIENT SETNAME of this process's connections (no spaces allowed)."""
        return f"{self.prefix}:{self.role}:{self.process_id}"

    def describe(self) -> str:
        return f"role={self.role} url={redacted(self.url)} prefix={self.prefix}"
