"""Every limit on text that reaches dback from outside, and the checks that enforce them.

Two kinds of input carry text: client messages (``connect``, ``get_user_data``) and plugin
records (guilds, members, chat). Clients are hostile, so a message with a bad field is
answered with an ``error`` and otherwise ignored. Plugins are fallible, so a record's field
is repaired (cut to its limit, unencodable characters replaced) and the plugin named in a
warning. The numbers are all here so that docs/security.md can list them from one place;
Discord's own limits are the guide, with room to spare.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import Any

from dback_core.wire import protocol

#: Characters a client may send in each ``connect`` field; ``server`` also bounds
#: ``get_user_data``'s ``serverId``.
CLIENT_FIELD_CHARS = {"server": 100, "password": 1024, "discordToken": 2048}
#: Characters of ``discordUser`` (a Discord user object) once encoded as JSON.
DISCORD_USER_CHARS = 4096

#: A guild's name (Discord allows 100).
NAME_CHARS = 100
#: A member's username (Discord allows 32 for a name, 32 for a display name).
USERNAME_CHARS = 100
#: A uid or guild id; a snowflake has at most 20 digits. Longer ids are dropped, not cut,
#: because two cut ids could collide.
ID_CHARS = 64
#: A chat message (Discord allows 2,000, 4,000 with Nitro).
MESSAGE_CHARS = 4000
#: A chat message's channel name (Discord allows 100).
CHANNEL_CHARS = 100


def text_problem(text: str, limit: int) -> str | None:
    """What is wrong with ``text`` as a client field: too long, or not encodable (a lone
    surrogate, which JSON's ``\\ud800`` escapes can carry and UTF-8 cannot)."""
    if len(text) > limit:
        return f"longer than {limit} characters"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "not valid Unicode text"
    return None


def first_bad_text(value: Any) -> str | None:
    """The first string in a decoded JSON value (keys included) that UTF-8 cannot encode, or
    None. Iterative, because JSON nests deeper than Python recurses."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if text_problem(item, len(item)) is not None:
                return item
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


def clean_text(value: Any, limit: int) -> tuple[str, str | None]:
    """``value`` as text every client can be sent: at most ``limit`` characters, characters
    UTF-8 cannot encode replaced by ``?``. Returns the text and what was repaired, if
    anything."""
    text = value if isinstance(value, str) else str(value)
    problem = None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode("utf-8")
            problem = "characters that are not valid Unicode replaced"
    if len(text) > limit:
        problem = f"cut from {len(text)} to {limit} characters"
        text = text[:limit]
    return text, problem


class OnceLog:
    """Logs a warning once per key: a record that a provider sends again on every reload,
    or a member whose every presence is broken, is reported once, not once per event.

    Remembers at most ``size`` keys; past that it starts afresh, so memory stays bounded
    and a long-lived problem is reported again now and then.
    """

    def __init__(self, logger: logging.Logger, size: int = 4096) -> None:
        self.logger = logger
        self.size = size
        self._seen: set[Hashable] = set()

    def warning(self, key: Hashable, message: str, *args: Any) -> None:
        if key in self._seen:
            return
        if len(self._seen) >= self.size:
            self._seen.clear()
        self._seen.add(key)
        self.logger.warning(message, *args)


#: The types each ``connect`` field may have; ``None`` stands for a field left out.
CONNECT_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "server": (str, int, type(None)),
    "password": (str, type(None)),
    "discordToken": (str, type(None)),
    "discordUser": (dict, type(None)),
}


def connect_problem(data: dict[str, Any]) -> str | None:
    """Why a ``connect`` payload is malformed, or None when its fields have usable types
    and fit the limits above."""
    for name, types in CONNECT_FIELD_TYPES.items():
        value = data.get(name)
        if isinstance(value, bool) or not isinstance(value, types):
            return f"'{name}' has the wrong type."
    for name, limit in CLIENT_FIELD_CHARS.items():
        value = data.get(name)
        if value is not None:
            problem = text_problem(str(value), limit)
            if problem is not None:
                return protocol.INVALID_TEXT.format(field=name, problem=problem)
    user = data.get("discordUser")
    if user is not None and len(protocol.dumps(user)) > DISCORD_USER_CHARS:
        problem = f"longer than {DISCORD_USER_CHARS} characters as JSON"
        return protocol.INVALID_TEXT.format(field="discordUser", problem=problem)
    return None
