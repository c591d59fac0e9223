"""The core's own settings: one table of ``Setting`` values, read into one frozen ``Settings``.

The core declares its ``DBACK_*`` variables the way a plugin declares its own
(``dback_core.plugin.settings``): ``CORE_SETTINGS`` is what ``dback serve --help``, ``dback
plugins``, ``/api/plugins`` and docs/configuration.md show, and the same declarations parse
and check the values, so a core variable and a plugin's are read by the same rules and
refused in the same words. ``Settings`` holds the values the server runs with; a plugin's
``startup`` receives it read-only.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from websockets.typing import Origin

from dback_core.plugin.settings import Setting


def _port_in_range(port: int) -> None:
    if not 0 <= port <= 65535:
        raise ValueError(f"must be between 0 and 65535, not {port}")


#: A network a trusted proxy's address lies in.
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def proxy_networks(text: str) -> tuple[Network, ...]:
    """The networks of ``DBACK_TRUSTED_PROXIES``: comma-separated addresses or networks
    (``127.0.0.1, 10.0.0.0/8, ::1``). Raises ``ValueError`` naming a bad entry."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if entry:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
    return tuple(networks)


def _proxies(text: str) -> None:
    proxy_networks(text)


#: Every variable the core reads, in the order the docs list them. Those named after a
#: ``Settings`` field (``DBACK_<FIELD>``) are read into it; the others are read by the
#: command line (logging, workers, their timeout) and the plugin loader (which plugins).
CORE_SETTINGS: tuple[Setting, ...] = (
    Setting("DBACK_HOST", str, "127.0.0.1", "address to listen on"),
    Setting(
        "DBACK_PORT",
        int,
        3000,
        "port for WebSocket and HTTP (0: any free port)",
        check=_port_in_range,
    ),
    Setting("DBACK_STATIC_DIR", str, None, "serve a front end from this directory"),
    Setting(
        "DBACK_LOG_LEVEL", str, "INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    ),
    Setting(
        "DBACK_LOG_FORMAT", str, "text", "json: one JSON object per line", choices=("text", "json")
    ),
    Setting(
        "DBACK_WORKERS",
        int,
        1,
        "processes sharing the port and, through a plugin sharing it, one world; 0: one per core",
        minimum=0,
    ),
    Setting(
        "DBACK_WORKER_TIMEOUT",
        float,
        5.0,
        "seconds a worker's event loop may go without a heartbeat before it is killed and "
        "started again",
        minimum=1,
    ),
    Setting("DBACK_REFRESH_SECONDS", float, 300.0, "reload guild data this often", minimum=0),
    Setting("DBACK_PROVIDER_TIMEOUT", float, 10.0, "seconds a plugin hook may take", minimum=0),
    Setting(
        "DBACK_MAX_FRAME_SIZE", int, 4096, "largest message a client may send, in bytes", minimum=0
    ),
    Setting(
        "DBACK_MAX_CLIENT_BUFFER",
        int,
        4 * 1024 * 1024,
        "unread bytes after which a client is dropped as too slow",
        minimum=0,
    ),
    Setting(
        "DBACK_MAX_CLIENT_LAG",
        float,
        10.0,
        "seconds a client may read nothing while its writes wait before it is dropped; 0: never",
        minimum=0,
    ),
    Setting(
        "DBACK_JOIN_CACHE_BYTES",
        int,
        64 * 1024 * 1024,
        "bytes of compressed joins and member lists kept for reuse (uncompressed size counted)",
        minimum=0,
    ),
    Setting(
        "DBACK_COMPRESSION",
        str,
        "deflate",
        "deflate: compressed once per guild for every client that offers it; none: declined",
        choices=("none", "deflate"),
    ),
    Setting(
        "DBACK_EVENT_LOOP",
        str,
        "asyncio",
        "the event loop of dback serve (uvloop: the speed extra; auto: uvloop when installed)",
        choices=("auto", "asyncio", "uvloop"),
    ),
    Setting("DBACK_BACKLOG", int, 4096, "listen backlog", minimum=0),
    Setting("DBACK_REUSE_PORT", bool, False, "listen with SO_REUSEPORT (--workers sets it)"),
    Setting("DBACK_OPEN_TIMEOUT", float, 10.0, "seconds to finish the handshake", minimum=0),
    Setting(
        "DBACK_STATIC_STALL_TIMEOUT",
        float,
        30.0,
        "seconds a static download may go without the client reading",
        minimum=0,
    ),
    Setting("DBACK_PING_INTERVAL", float, 20.0, "seconds between pings", minimum=0),
    Setting("DBACK_PING_TIMEOUT", float, 20.0, "seconds a pong may take", minimum=0),
    Setting("DBACK_MAX_CONNECTIONS", int, 20000, "open sockets in total", minimum=0),
    Setting(
        "DBACK_MAX_CONNECTIONS_PER_ADDRESS", int, 256, "open sockets from one address", minimum=0
    ),
    Setting("DBACK_MESSAGE_RATE", float, 5.0, "messages per second a client may send", minimum=0),
    Setting("DBACK_MESSAGE_BURST", int, 20, "messages a client may send in a burst", minimum=0),
    Setting(
        "DBACK_PASSWORD_LOCKOUT_AFTER",
        int,
        8,
        "wrong passwords from one address after which its password checks are locked out",
        minimum=1,
    ),
    Setting(
        "DBACK_PASSWORD_LOCKOUT",
        float,
        600.0,
        "seconds an address stays locked out of password checks",
        minimum=0,
    ),
    Setting(
        "DBACK_TRUSTED_PROXIES",
        str,
        "",
        "comma-separated addresses or networks of proxies whose X-Forwarded-For names the client",
        check=_proxies,
    ),
    Setting(
        "DBACK_SWITCH_RATE",
        float,
        1.0,
        "guild switches (connect) per second a client may make on average; more get an error",
        minimum=0,
    ),
    Setting("DBACK_SWITCH_BURST", int, 5, "guild switches a client may make in a burst", minimum=0),
    Setting(
        "DBACK_ALLOWED_ORIGINS", str, "", "comma-separated browser Origins allowed; empty: any"
    ),
    Setting("DBACK_PLUGINS", str, None, "plugins to load, in priority order; unset: all installed"),
    Setting("DBACK_DISABLE_PLUGINS", str, "", "installed plugins not to load"),
    Setting("DBACK_STRICT_PLUGINS", bool, False, "stop any command when any plugin fails to load"),
)

#: The declarations by variable.
CORE_BY_VARIABLE: dict[str, Setting] = {setting.variable: setting for setting in CORE_SETTINGS}


def core_setting(variable: str) -> Setting:
    """The declaration of one core variable (``KeyError`` for a name the core never reads)."""
    return CORE_BY_VARIABLE[variable]


@dataclass(frozen=True)
class Settings:
    """Everything the core needs to know to serve; field ``x`` is variable ``DBACK_X`` of
    ``CORE_SETTINGS``, whose defaults these are."""

    host: str = "127.0.0.1"
    port: int = 3000
    static_dir: Path | None = None
    #: Seconds after which a guild's data is reloaded from the providers.
    refresh_seconds: float = 300.0
    #: Seconds a provider hook may take before it counts as "no answer".
    provider_timeout: float = 10.0
    #: Largest frame a client may send, in bytes (clients only ever send tiny ``connect``s).
    max_frame_size: int = 4096
    #: Bytes queued for one client past which it is disconnected as too slow.
    max_client_buffer: int = 4 * 1024 * 1024
    #: Seconds a client's writes may stay paused (it reads nothing) before it is dropped.
    max_client_lag: float = 10.0
    #: Bytes of compressed joins and member lists kept for reuse (``dback_core.wire.joins``).
    join_cache_bytes: int = 64 * 1024 * 1024
    #: ``deflate``: permessage-deflate with every client that offers it, compressed once per
    #: guild rather than per connection (``dback_core.wire.deflate``); ``none`` declines it.
    compression: str = "deflate"
    #: The event loop of ``dback serve``: ``asyncio`` (the default), ``uvloop`` (the ``speed``
    #: extra) or ``auto``, uvloop when it is installed (``dback_core.ops.loops``).
    event_loop: str = "asyncio"
    #: Listen backlog, sized for thousands of clients reconnecting at once.
    backlog: int = 4096
    #: Listen with SO_REUSEPORT, so several processes share the port (``--workers`` sets it
    #: for its workers; the kernel spreads new connections over them).
    reuse_port: bool = False
    #: Seconds from accept a client may take to complete the WebSocket handshake.
    open_timeout: float = 10.0
    #: Seconds a static file download may go without the client reading anything.
    static_stall_timeout: float = 30.0
    #: Seconds between pings that detect vanished clients; a pong must come within timeout.
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    #: Open connections allowed in total, and from one remote address.
    max_connections: int = 20000
    max_connections_per_address: int = 256
    #: Messages per second a client may send on average, and in a burst.
    message_rate: float = 5.0
    message_burst: int = 20
    #: Wrong passwords from one address (over all guilds) after which its password checks
    #: are locked out, and for how many seconds (``dback_core.serving.guessing``).
    password_lockout_after: int = 8
    password_lockout: float = 600.0
    #: Comma-separated addresses or networks of reverse proxies whose ``X-Forwarded-For``
    #: names the client, for the password throttle and fair shares (``wire.addresses``).
    trusted_proxies: str = ""
    #: Guild switches (``connect``) per second on average, and in a burst:
    #: each may cost a large frame; one past the rate is answered with an ``error``.
    switch_rate: float = 1.0
    switch_burst: int = 5
    #: Comma-separated Origins allowed to open a WebSocket (empty: any). Clients that send no
    #: Origin header (not browsers) are always allowed: cross-site hijacking needs a browser.
    allowed_origins: str = ""

    @property
    def origins(self) -> list[Origin | None] | None:
        """The allow-list for the handshake, or None when every Origin is welcome."""
        listed = [
            Origin(origin.strip()) for origin in self.allowed_origins.split(",") if origin.strip()
        ]
        return [*listed, None] if listed else None

    @property
    def proxies(self) -> tuple[Network, ...]:
        """The networks of the trusted proxies (``trusted_proxies``, checked on reading)."""
        return proxy_networks(self.trusted_proxies)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``DBACK_*`` variables; explicit ``overrides`` win. A bad value
        raises ``SettingsError`` naming the first variable with one."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, setting in _declarations():
            if environ.get(setting.variable, "").strip():
                values[name] = setting.parse(environ)
        if values.get("static_dir") is not None:
            values["static_dir"] = Path(values["static_dir"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise a ``SettingsError`` naming the first variable with an unusable value."""
        for name, setting in _declarations():
            value = getattr(self, name)
            if value is not None:
                setting.validate(value)


def _declarations() -> list[tuple[str, Setting]]:
    """Each ``Settings`` field with the declaration of its variable."""
    return [(field.name, core_setting(f"DBACK_{field.name.upper()}")) for field in fields(Settings)]
