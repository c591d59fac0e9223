"""Normalising what plugins return into what the d-zone client can draw.

Plugins are written by many hands; the client is strict (a uid must be a string, a user
without a username is not drawn, ``passworded`` must be a boolean). Records are repaired on the
way in - missing fields get defaults, an unknown status becomes ``offline`` and a bad colour
none, each logged once per plugin - and a record that cannot be repaired is dropped with a
warning that names the plugin responsible. Text is cut to
the limits in ``dback_core.wire.inputs``: one oversized username would otherwise go to every viewer
in every join. Each problem is logged once per plugin and record, not on every reload.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from dback_core.plugin.events import VALID_STATUSES
from dback_core.plugin.settings import parse_bool
from dback_core.wire.inputs import ID_CHARS, NAME_CHARS, USERNAME_CHARS, OnceLog, clean_text

log = logging.getLogger(__name__)
#: Record problems, reported once per plugin and record.
record_warnings = OnceLog(log)

_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")


@dataclass(frozen=True)
class ServerInfo:
    """A guild as listed in ``server-list``, plus the secret the core needs to admit clients."""

    key: str
    id: str
    name: str
    passworded: bool
    default: bool
    password: str | None
    plugin: str
    #: An opaque, non-secret value a plugin changes whenever the guild's access rules change
    #: outside the record - a password hash the plugin keeps and checks itself - so that
    #: earlier admissions are voided like after a change of ``password``.
    access_version: str | None = None

    def public(self) -> dict[str, Any]:
        """The ``server-list`` entry: never the password."""
        entry: dict[str, Any] = {"id": self.id, "name": self.name, "passworded": self.passworded}
        if self.default:
            entry["default"] = True
        return entry

    def for_plugins(self) -> dict[str, Any]:
        """What ``authorize`` receives about the guild (the password stays in the core)."""
        return {**self.public(), "key": self.key, "plugin": self.plugin}

    @cached_property
    def access(self) -> str:
        """A fingerprint of the rules a viewer was admitted under: whether a login is needed,
        the password (hashed, so that it is not copied into every viewer) and the plugin
        that decides. A viewer's admission holds while this stays the same; a new password,
        or a guild turning passworded, makes every earlier admission void."""
        if not self.passworded:
            return "open"
        secret = hashlib.sha256((self.password or "").encode()).hexdigest()
        return f"{self.plugin}:{self.password is not None}:{secret}:{self.access_version or ''}"


def _identifier(value: Any) -> str | None:
    """Snowflakes arrive as str or int; anything else, or anything longer than ``ID_CHARS``
    or not valid Unicode, cannot be an id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None
    if not text or clean_text(text, ID_CHARS)[1] is not None:
        return None
    return text


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return parse_bool(value) is True
    return bool(value)


def normalize_server(key: Any, record: Any, plugin: str) -> ServerInfo | None:
    """One guild record, or None when it is disabled or cannot be repaired."""
    server_key = _identifier(key)
    if server_key is None or not isinstance(record, dict):
        record_warnings.warning(
            (plugin, "guild", str(key)[:ID_CHARS]),
            "plugin %s: dropped guild %.80r: not a keyed record with a usable id",
            plugin,
            key,
        )
        return None
    if not record:
        return None
    if "enabled" in record and not _flag(record["enabled"]):
        return None
    short_id = _identifier(record.get("id")) or server_key
    name = record.get("name")
    if name in (None, ""):
        name = short_id
    name, problem = clean_text(name, NAME_CHARS)
    if problem is not None:
        record_warnings.warning(
            (plugin, "guild", server_key),
            "plugin %s: guild %s: name %s",
            plugin,
            server_key,
            problem,
        )
    password = record.get("password")
    return ServerInfo(
        key=server_key,
        id=short_id,
        name=name,
        passworded=_flag(record.get("passworded", False)) or bool(password),
        default=_flag(record.get("is_default", record.get("default", False))),
        password=str(password) if password not in (None, "") else None,
        plugin=plugin,
        access_version=_access_version(record.get("access_version")),
    )


def _access_version(value: Any) -> str | None:
    """A record's ``access_version`` as text (at most ``ID_CHARS`` characters), or None."""
    if value is None or isinstance(value, bool):
        return None
    return str(value)[:ID_CHARS]


def merge_servers(answers: list[tuple[str, dict[str, Any]]]) -> dict[str, ServerInfo]:
    """Union of every plugin's guilds in plugin order; the earlier plugin wins a key.

    Exactly one guild ends up marked default: the first flagged one, or else the first guild,
    because the client falls back to ``"default"`` on every error and would loop without one.
    """
    merged: dict[str, ServerInfo] = {}
    for plugin, servers in answers:
        for key, record in servers.items():
            info = normalize_server(key, record, plugin)
            if info is not None and info.key not in merged:
                merged[info.key] = info
    default_key = next((key for key, info in merged.items() if info.default), None)
    if default_key is None and merged:
        default_key = next(iter(merged))
    return {key: _with_default(info, key == default_key) for key, info in merged.items()}


def _with_default(info: ServerInfo, is_default: bool) -> ServerInfo:
    if info.default == is_default:
        return info
    return ServerInfo(
        key=info.key,
        id=info.id,
        name=info.name,
        passworded=info.passworded,
        default=is_default,
        password=info.password,
        plugin=info.plugin,
        access_version=info.access_version,
    )


def normalize_color(value: Any, plugin: str | None = None) -> str | Literal[False]:
    """``#rrggbb`` in lower case, or False (the client's "no colour").

    A value that is neither a colour nor a way to say "none" (False, None, ``""``) is a
    plugin's mistake: with ``plugin`` given, it is logged once per plugin.
    """
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFFFF:
        return f"#{value:06x}"
    if isinstance(value, str) and _COLOR.match(value.strip()):
        text = value.strip().lower()
        if len(text) == 4:
            text = "#" + "".join(char * 2 for char in text[1:])
        return text
    if plugin is not None and value not in (False, None, ""):
        record_warnings.warning(
            (plugin, "colour"),
            "plugin %s: role colour %.40r is not #rrggbb; shown without colour "
            "(reported once per plugin)",
            plugin,
            value,
        )
    return False


def normalize_status(value: Any, plugin: str | None = None) -> str:
    """One of the client's four statuses; ``invisible`` is ``offline``.

    A missing status is ``offline``; any other value is a plugin's mistake, also shown
    ``offline`` and logged once per plugin when ``plugin`` is given (one broken mapping would
    otherwise warn for every member).
    """
    text = str(value).strip().lower() if value is not None else ""
    if text == "invisible":
        return "offline"
    if text in VALID_STATUSES:
        return text
    if plugin is not None and value is not None:
        record_warnings.warning(
            (plugin, "status"),
            "plugin %s: status %.40r is not online, idle, dnd or offline; shown as offline "
            "(reported once per plugin)",
            plugin,
            value,
        )
    return "offline"


def normalize_user(key: Any, record: Any, plugin: str) -> dict[str, Any] | None:
    """One member as the client expects it, or None (with a warning) when beyond repair."""
    if not isinstance(record, dict):
        log.warning("plugin %s: dropped user %r: record is %s", plugin, key, type(record).__name__)
        return None
    uid = _identifier(record.get("uid")) or _identifier(key)
    if uid is None:
        record_warnings.warning(
            (plugin, "user", str(key)[:ID_CHARS]),
            "plugin %s: dropped user %.80r: no usable uid",
            plugin,
            key,
        )
        return None
    return {
        "uid": uid,
        "username": username(record.get("username"), uid, plugin),
        "status": normalize_status(record.get("status"), plugin),
        "roleColor": normalize_color(record.get("roleColor"), plugin),
    }


def username(value: Any, uid: str, plugin: str) -> str:
    """A member's name as the client can draw it, the same at join and in a live presence.

    A missing or empty name becomes the uid (the client skips members without a name, so
    they would be invisible); an oversized one is cut to ``USERNAME_CHARS``. Either is a
    plugin's fault, logged once per plugin and member.
    """
    if value is None or value == "":
        record_warnings.warning(
            (plugin, "username", uid),
            "plugin %s: user %s has no username; shown under its uid",
            plugin,
            uid,
        )
        return uid
    text, problem = clean_text(value, USERNAME_CHARS)
    if problem is not None:
        record_warnings.warning(
            (plugin, "username", uid), "plugin %s: user %s: username %s", plugin, uid, problem
        )
    return text


def normalize_users(users: dict[Any, Any], plugin: str) -> dict[str, dict[str, Any]]:
    normalized: dict[str, dict[str, Any]] = {}
    for key, record in users.items():
        user = normalize_user(key, record, plugin)
        if user is not None:
            normalized[user["uid"]] = user
    return normalized
