"""The plugin's settings: two variables declared through the settings API (the bot token
and where the TOML file is), per-guild options from that TOML file.

The bot sees every guild it is in, so the file is optional and only says what differs from
the defaults. It is read once, when the server starts; a mistake in it (an unknown key, a
wrong type, a guild key that is not a snowflake) stops the plugin with a message naming the
file and the key, rather than silently showing the wrong guilds.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, cast

from dback_core import NotConfigured, SettingsError
from dback_core.plugin.redaction import remember
from dback_core.plugin.settings import Setting, read
from dback_discord.shards import AUTO

TOKEN_ENV = "DBACK_DISCORD_TOKEN"
CONFIG_ENV = "DBACK_DISCORD_CONFIG"


SETTINGS = (
    Setting(
        TOKEN_ENV,
        str,
        None,
        "the bot token; required, never logged",
        secret=True,
    ),
    Setting(CONFIG_ENV, str, None, "path of a TOML file with per-guild options"),
)


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
    #: Channels by id or by name (lower case, without ``#``); names match any channel so named.
    ignore_channels: frozenset[int | str] = frozenset()
    listen_channels: frozenset[int | str] = frozenset()
    #: Channels relayed although their readers (below) cannot view them; per guild only.
    publish_channels: frozenset[int | str] = frozenset()
    #: The role whose view of a channel makes it public; None means ``@everyone``. Only for
    #: a ``discord_login`` guild, whose viewers are members (see README, "What is published").
    readers_role: int | None = None
    #: Seconds a message waits before it is shown; deleted meanwhile, it never is.
    chat_delay: float = 0.0
    hide_offline: bool = False
    #: Above this many members, offline members are left out of the map (see README).
    offline_above: int = 20_000
    #: The most members a join lists (about 3.5 MB), whatever their status.
    max_listed: int = 40_000

    @property
    def passworded(self) -> bool:
        return bool(self.password) or self.discord_login

    @property
    def filters_channels(self) -> bool:
        return bool(self.listen_channels or self.ignore_channels)

    def hears_channel(self, channels: set[int | str]) -> bool:
        """Whether a message is shown, given the ids and names of its channel (and, for a
        thread, of its parent channel)."""
        if self.listen_channels and not channels & self.listen_channels:
            return False
        return not channels & self.ignore_channels


@dataclass(frozen=True)
class BotOptions:
    """How the Discord client behaves; the ``[bot]`` table. The defaults suit real Discord."""

    #: Seconds discord.py waits after the last guild arrives before it is "ready".
    guild_ready_timeout: float = 2.0
    #: Seconds to wait before identifying again after a session could not be resumed;
    #: Discord limits identifies, so only tests should lower it. Doubles while new sessions
    #: keep being invalidated, up to ``reidentify_max``; starts over after a session that
    #: stayed up ``stable_session`` seconds. Shards start this far apart too.
    reidentify_delay: float = 5.0
    reidentify_max: float = 300.0
    stable_session: float = 60.0
    #: Daily session starts never spent: identifying stops while this many are left.
    session_reserve: int = 50
    #: Gateway connections: a count, or ``"auto"`` for the number Discord recommends.
    shards: int | str = 1
    #: Seconds without a gateway connection before the plugin reports itself unavailable.
    unavailable_after: float = 30.0
    #: Further seconds without a connection before its guilds are withdrawn (``failed``).
    withdraw_after: float = 270.0
    #: Seconds before trying again after Discord refused the privileged intents (4014);
    #: doubles on each refusal, up to ``failed_retry_max``.
    failed_retry: float = 60.0
    failed_retry_max: float = 900.0
    #: Seconds over which role changes are collected before members' colours are sent:
    #: at most one colour frame per member per interval.
    role_interval: float = 1.0


@dataclass(frozen=True)
class LoginLimits:
    """The ``[login]`` table: how hard viewers' Discord logins may make the bot call Discord."""

    #: Outbound login checks per second on average, and in a burst.
    rate: float = 2.0
    burst: int = 5
    #: Login checks in flight at once.
    concurrency: int = 4
    #: Checks one address may have in flight or waiting for its turn (the budget above is
    #: shared round-robin between addresses); one more is refused at once as busy.
    per_address: int = 2
    #: Seconds a check may wait for its turn before the viewer is told login is busy.
    wait: float = 3.0
    #: Seconds a valid token's guild list is trusted, and a refused token stays refused.
    admit_ttl: float = 300.0
    refuse_ttl: float = 3600.0
    #: Tokens remembered at most (oldest forgotten first): forged tokens cost bounded memory.
    cache_size: int = 10_000


@dataclass(frozen=True)
class DiscordConfig:
    """The whole configuration; ``token`` is never printed (see ``__repr__``).

    ``serve_unlisted`` is what ``[defaults] enabled`` says when the file says it, else None:
    a public bot serves guilds without a ``[guilds.<id>]`` table only when it is True.
    """

    token: str
    bot: BotOptions = field(default_factory=BotOptions)
    login: LoginLimits = field(default_factory=LoginLimits)
    defaults: GuildOptions = field(default_factory=GuildOptions)
    guilds: Mapping[int, GuildOptions] = field(default_factory=dict)
    serve_unlisted: bool | None = None
    #: Where the configuration came from, for messages that say which file to edit.
    source: str = f"the file named by {CONFIG_ENV} (not set)"

    def __repr__(self) -> str:
        return f"DiscordConfig(token=<hidden>, guilds={sorted(self.guilds)})"

    def guild(self, guild_id: int) -> GuildOptions:
        return self.guilds.get(guild_id, self.defaults)

    def allows(self, guild_id: int, bot_public: bool) -> bool:
        """Whether the guild is served at all (``enabled = false`` hides a served guild).

        A guild with its own table is allowed; any other is allowed by ``[defaults] enabled``
        when written, else only when the bot is private (nobody but its owner can add it).
        """
        if guild_id in self.guilds:
            return self.guilds[guild_id].enabled
        if self.serve_unlisted is not None:
            return self.serve_unlisted
        return not bot_public


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
    "publish_channels": (list,),
    "readers_role": (str, int),
    "chat_delay": (int, float),
    "hide_offline": (bool,),
    "offline_above": (int,),
    "max_listed": (int,),
}
_ID_LISTS = {"ignore_users"}
_CHANNEL_LISTS = {"ignore_channels", "listen_channels", "publish_channels"}
#: Keys that name one guild, so a ``[defaults]`` value would apply to all of them.
_ONE_GUILD_KEYS = {"short_id", "default", "readers_role"}
#: The longest ``chat_delay``: messages wait in memory meanwhile.
MAX_CHAT_DELAY = 60.0


def _number_keys(options: type) -> dict[str, tuple[type, ...]]:
    """The keys of a table of numbers read into the dataclass ``options``: its fields, each
    taking the field's type (a whole number where seconds or a rate are asked for too)."""
    return {
        option.name: (int, float) if option.type == "float" else (int,)
        for option in fields(options)
    }


_BOT_KEYS = {**_number_keys(BotOptions), "shards": (int, str)}
_LOGIN_KEYS = _number_keys(LoginLimits)
_POSITIVE = {"rate", "burst", "concurrency", "per_address", "cache_size"}


def _snowflake(value: Any, where: str) -> int:
    text = str(value).strip() if isinstance(value, str | int) else ""
    if isinstance(value, bool) or not text.isdigit():
        raise ConfigError(f"{where}: {value!r} is not a Discord id (digits only)")
    return int(text)


def _has_type(value: Any, types: tuple[type, ...]) -> bool:
    """Whether a TOML value has one of ``types``; a bool is not taken for a number."""
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


def _check_table(table: Any, keys: dict[str, tuple[type, ...]], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    checked: dict[str, Any] = {}
    for key, value in table.items():
        if key not in keys:
            raise ConfigError(f"{where}: unknown key {key!r}; known: {', '.join(sorted(keys))}")
        types = keys[key]
        if not _has_type(value, types):
            raise ConfigError(f"{where}.{key}: {value!r} has the wrong type")
        if key in _ID_LISTS:
            value = frozenset(_snowflake(item, f"{where}.{key}") for item in cast(list[Any], value))
        elif key in _CHANNEL_LISTS:
            value = frozenset(_channel(item, f"{where}.{key}") for item in cast(list[Any], value))
        elif key == "client_id":
            value = str(value)
        elif key == "readers_role":
            value = _snowflake(value, f"{where}.{key}")
        elif key == "chat_delay" and not 0 <= value <= MAX_CHAT_DELAY:
            raise ConfigError(f"{where}.{key}: must be between 0 and {MAX_CHAT_DELAY:g} seconds")
        elif isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"{where}.{key}: must not be negative")
        if key in _POSITIVE and value <= 0:
            raise ConfigError(f"{where}.{key}: must be above 0")
        checked[key] = value
    return checked


def _channel(value: Any, where: str) -> int | str:
    """A channel id, or a channel name in the form it is compared in (see ``channel_name``)."""
    if isinstance(value, str) and not value.strip().isdigit():
        name = channel_name(value)
        if not name:
            raise ConfigError(f"{where}: {value!r} is neither a channel id nor a name")
        return name
    return _snowflake(value, where)


def channel_name(name: str) -> str:
    """How channel names are compared: without a leading ``#``, case-insensitively."""
    return name.strip().removeprefix("#").strip().casefold()


def parse_config(token: str, document: Mapping[str, Any], source: str = "config") -> DiscordConfig:
    """Validate a parsed TOML document into a ``DiscordConfig``."""
    unknown = set(document) - {"bot", "login", "defaults", "guilds"}
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {', '.join(sorted(unknown))}")
    bot = BotOptions(**_check_table(document.get("bot", {}), _BOT_KEYS, f"{source}: bot"))
    _check_shards(bot.shards, f"{source}: bot.shards")
    login = LoginLimits(**_check_table(document.get("login", {}), _LOGIN_KEYS, f"{source}: login"))
    default_options = _check_table(document.get("defaults", {}), _GUILD_KEYS, f"{source}: defaults")
    misplaced = sorted(_ONE_GUILD_KEYS & set(default_options))
    if misplaced:
        raise ConfigError(
            f"{source}: defaults.{misplaced[0]}: names one guild; "
            "set it in that guild's [guilds.<id>] table"
        )
    if "publish_channels" in default_options:
        raise ConfigError(
            f"{source}: defaults.publish_channels: a channel members cannot read is published "
            "only by naming it in its guild's [guilds.<id>] table"
        )
    defaults = GuildOptions(**default_options)
    tables = document.get("guilds", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{source}: guilds must be a table of [guilds.<id>] tables")
    guilds: dict[int, GuildOptions] = {}
    for key, table in tables.items():
        where = f"{source}: guilds.{key}"
        options = _check_table(table, _GUILD_KEYS, where)
        # A guild's own table enables it unless it says otherwise, whatever [defaults] says:
        # ``[defaults] enabled = false`` plus tables makes an allow-list.
        guild = guilds[_snowflake(key, where)] = replace(defaults, **{"enabled": True, **options})
        if guild.readers_role is not None and not guild.discord_login:
            raise ConfigError(
                f"{where}.readers_role: needs discord_login = true; without it anyone can "
                "watch, so only what @everyone can read is published"
            )
    _check_unique(guilds, source)
    # Guild passwords are secrets held in the file: masked in every log line like the token.
    remember(defaults.password, *(guild.password for guild in guilds.values()))
    return DiscordConfig(
        token=token,
        bot=bot,
        login=login,
        defaults=defaults,
        guilds=guilds,
        serve_unlisted=default_options.get("enabled"),
        source=source,
    )


def _check_shards(value: int | str, where: str) -> None:
    """``shards`` is a count of at least 1 or ``"auto"``."""
    if value == AUTO or (isinstance(value, int) and value >= 1):
        return
    raise ConfigError(f'{where}: {value!r} is neither a number of shards (1 or more) nor "auto"')


def _check_unique(guilds: Mapping[int, GuildOptions], source: str) -> None:
    """Two guilds may not share a short id or both be the default; both are named."""
    owners: dict[str, int] = {}
    for guild_id, options in guilds.items():
        if not options.short_id:
            continue
        if options.short_id in owners:
            raise ConfigError(
                f"{source}: short_id {options.short_id!r} is used by both "
                f"guilds.{owners[options.short_id]} and guilds.{guild_id}"
            )
        owners[options.short_id] = guild_id
    defaults = [guild_id for guild_id, options in guilds.items() if options.default]
    if len(defaults) > 1:
        raise ConfigError(
            f"{source}: more than one default guild: guilds.{defaults[0]} and guilds.{defaults[1]}"
        )


def load_config(environ: Mapping[str, str] | None = None) -> DiscordConfig:
    """The configuration from the environment; ``NotConfigured`` without a token."""
    values = read(SETTINGS, environ)
    token = values[TOKEN_ENV]
    if token is None:
        raise NotConfigured(f"set {TOKEN_ENV} to the bot token to serve Discord guilds")
    path_text = values[CONFIG_ENV]
    if path_text is None:
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
