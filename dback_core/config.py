"""Server settings, read from ``DBACK_*`` environment variables and CLI options.

One frozen dataclass so every part of the server reads the same values, and tests can build
settings for one server without touching the process environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from websockets.typing import Origin

from dback_core.addresses import trusted_networks
from dback_core.settings import SettingsError


def _as_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected a boolean (1/0, true/false, yes/no), got {value!r}")


@dataclass(frozen=True)
class Settings:
    """Everything the core needs to know to serve; each field has a ``DBACK_<NAME>`` variable."""

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
    #: ``deflate``: permessage-deflate with every client that offers it, compressed once per
    #: guild rather than per connection (``dback_core.deflate``); ``none`` declines it.
    compression: str = "deflate"
    #: The event loop of ``dback serve``: ``asyncio`` (the default), ``uvloop`` (the ``speed``
    #: extra) or ``auto``, uvloop when it is installed (``dback_core.loops``).
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
    #: are locked out, and for how many seconds (``dback_core.guessing``).
    password_lockout_after: int = 8
    password_lockout: float = 600.0
    #: Comma-separated addresses or networks of reverse proxies whose ``X-Forwarded-For``
    #: names the client, for the per-address password throttle and fair shares.
    trusted_proxies: str = ""
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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``DBACK_*`` variables; explicit ``overrides`` win."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(f"DBACK_{field.name.upper()}")
            if raw is None or raw == "":
                continue
            values[field.name] = _convert(field.name, field.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def validate(self) -> None:
        """Raise a ``SettingsError`` naming the first variable with an unusable value."""
        if self.compression not in {"none", "deflate"}:
            raise SettingsError(
                "DBACK_COMPRESSION", f"must be 'none' or 'deflate', not {self.compression!r}"
            )
        if self.event_loop not in {"auto", "asyncio", "uvloop"}:
            raise SettingsError(
                "DBACK_EVENT_LOOP",
                f"must be 'auto', 'asyncio' or 'uvloop', not {self.event_loop!r}",
            )
        try:
            trusted_networks(self.trusted_proxies)
        except ValueError as error:
            raise SettingsError("DBACK_TRUSTED_PROXIES", str(error)) from None
        if not 0 <= self.port <= 65535:
            raise SettingsError("DBACK_PORT", f"must be between 0 and 65535, not {self.port}")
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int | float) and not value >= 0:
                raise SettingsError(
                    f"DBACK_{field.name.upper()}", f"must not be negative, got {value!r}"
                )


def _convert(name: str, type_name: Any, raw: str) -> Any:
    type_text = str(type_name)
    try:
        if type_text.startswith("Path"):
            return Path(raw)
        if type_text == "int":
            return int(raw)
        if type_text == "float":
            return float(raw)
        if type_text == "bool":
            return _as_bool(raw)
    except ValueError:
        kinds = {"int": "a whole number", "float": "a number", "bool": "a boolean (1/0, yes/no)"}
        kind = kinds.get(type_text, "valid")
        raise SettingsError(f"DBACK_{name.upper()}", f"must be {kind}, got {raw!r}") from None
    return raw
