"""The plugin's settings: the bot token from the environment, per-guild options from TOML.

The bot sees every guild it is in, so the file is optional and only says what differs from
the defaults. It is read once, when the server starts; a mistake in it (an unknown key, a
wrong type, a guild key that is not a snowflake) stops the plugin with a message naming the
file and the key, rather than silently showing the wrong guilds.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dback_core.plugins import NotConfigured, SettingsError

TOKEN_ENV = "DBACK_DISCORD_TOKEN"
CONFIG_ENV = "DBACK_DISCORD_CONFIG"


class ConfigError(SettingsError):
    """The TOML configuration named by ``DBACK_DISCORD_CONFIG`` cannot be used as written."""

    def __init__(self, message: str) -> None:
        super().__init__(CONFIG_ENV, f"is not usable: {message}")


@dataclass(frozen=True)
class GuildOptions:
    """What one guild's entry (over the ``[defaults]`` table) says."""

    alias: str | None = None
    short_id: str | None = None
    default: bool = False
    enabled: bool = True
    password: str | None = None
    discord_login: bool = False
    client_id: str | None = None
    ignore_users: frozenset[int] = frozenset()
    ignore_bots: bool = False
    ignore_channels: frozenset[int] = frozenset()
    listen_channels: frozenset[int] = frozenset()
    hide_offline: bool = False

    @property
    def passworded(self) -> bool:
        return bool(self.password) or self.discord_login

    def hears_channel(self, channel_ids: set[int]) -> bool:
        """Whether a message in a channel (or a thread of it, both ids given) is shown."""
        if self.listen_channels and not channel_ids & self.listen_channels:
            return False
        return not channel_ids & self.ignore_channels


@dataclass(frozen=True)
class BotOptions:
    """How the Discord client behaves; the ``[bot]`` table. The defaults suit real Discord."""

    #: Seconds discord.py waits after the last guild arrives before it is "ready".
    guild_ready_timeout: float = 2.0
    #: Seconds to wait before identifying again after a session could not be resumed;
    #: Discord limits identifies, so only tests should lower it.
    reidentify_delay: float = 5.0


@dataclass(frozen=True)
class DiscordConfig:
    """The whole configuration; ``token`` is never printed (see ``__repr__``)."""

    token: str
    bot: BotOptions = field(default_factory=BotOptions)
    defaults: GuildOptions = field(default_factory=GuildOptions)
    guilds: Mapping[int, GuildOptions] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"DiscordConfig(token=<hidden>, guilds={sorted(self.guilds)})"

    def guild(self, guild_id: int) -> GuildOptions:
        return self.guilds.get(guild_id, self.defaults)


_TEXT = (str,)
_GUILD_KEYS: dict[str, tuple[type, ...]] = {
    "alias": _TEXT,
    "short_id": _TEXT,
    "default": (bool,),
    "enabled": (bool,),
    "password": _TEXT,
    "discord_login": (bool,),
    "client_id": (str, int),
    "ignore_users": (list,),
    "ignore_bots": (bool,),
    "ignore_channels": (list,),
    "listen_channels": (list,),
    "hide_offline": (bool,),
}
_ID_LISTS = {"ignore_users", "ignore_channels", "listen_channels"}
_BOT_KEYS: dict[str, tuple[type, ...]] = {
    "guild_ready_timeout": (int, float),
    "reidentify_delay": (int, float),
}


def _snowflake(value: Any, where: str) -> int:
    text = str(value).strip() if isinstance(value, str | int) else ""
    if isinstance(value, bool) or not text.isdigit():
        raise ConfigError(f"{where}: {value!r} is not a Discord id (digits only)")
    return int(text)


def _check_table(table: Any, keys: dict[str, tuple[type, ...]], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    checked: dict[str, Any] = {}
    for key, value in table.items():
        if key not in keys:
            raise ConfigError(f"{where}: unknown key {key!r}; known: {', '.join(sorted(keys))}")
        types = keys[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise ConfigError(f"{where}.{key}: {value!r} has the wrong type")
        if key in _ID_LISTS:
            value = frozenset(_snowflake(item, f"{where}.{key}") for item in value)
        elif key == "client_id":
            value = str(value)
        elif isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"{where}.{key}: must not be negative")
        checked[key] = value
    return checked


def parse_config(token: str, document: Mapping[str, Any], source: str = "config") -> DiscordConfig:
    """Validate a parsed TOML document into a ``DiscordConfig``."""
    unknown = set(document) - {"bot", "defaults", "guilds"}
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {', '.join(sorted(unknown))}")
    bot = BotOptions(**_check_table(document.get("bot", {}), _BOT_KEYS, f"{source}: bot"))
    defaults = GuildOptions(
        **_check_table(document.get("defaults", {}), _GUILD_KEYS, f"{source}: defaults")
    )
    tables = document.get("guilds", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{source}: guilds must be a table of [guilds.<id>] tables")
    guilds: dict[int, GuildOptions] = {}
    for key, table in tables.items():
        where = f"{source}: guilds.{key}"
        options = _check_table(table, _GUILD_KEYS, where)
        guilds[_snowflake(key, where)] = replace(defaults, **options)
    _check_unique(guilds, source)
    return DiscordConfig(token=token, bot=bot, defaults=defaults, guilds=guilds)


def _check_unique(guilds: Mapping[int, GuildOptions], source: str) -> None:
    short_ids = [options.short_id for options in guilds.values() if options.short_id]
    repeated = sorted({short for short in short_ids if short_ids.count(short) > 1})
    if repeated:
        raise ConfigError(f"{source}: short_id {', '.join(repeated)} used by more than one guild")
    defaults = [guild_id for guild_id, options in guilds.items() if options.default]
    if len(defaults) > 1:
        raise ConfigError(f"{source}: more than one default guild: {defaults}")


def load_config(environ: Mapping[str, str] | None = None) -> DiscordConfig:
    """The configuration from the environment; ``NotConfigured`` without a token."""
    environ = os.environ if environ is None else environ
    token = environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise NotConfigured(f"set {TOKEN_ENV} to the bot token to serve Discord guilds")
    path_text = environ.get(CONFIG_ENV, "").strip()
    if not path_text:
        return DiscordConfig(token=token)
    path = Path(path_text)
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    return parse_config(token, document, str(path))
