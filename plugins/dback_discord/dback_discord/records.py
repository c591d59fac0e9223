"""Turning discord.py's guilds and members into dback's records and events.

Kept apart from the client so that the per-guild options (ignore, hide offline, alias) are
applied in one place, the same way for the first snapshot and for every live change.
"""

from __future__ import annotations

import hashlib
import string
from typing import Any, Literal

import discord

from dback_core.plugin.events import Presence
from dback_discord.config import GuildOptions

_ALPHABET = string.digits + string.ascii_lowercase


def short_id(guild_id: int, options: GuildOptions) -> str:
    """The id clients use for a guild: the configured one, or a hash of the snowflake.

    A hash rather than a counter, so that links (``?s=<id>``) survive restarts and guilds
    joined or left in between.
    """
    if options.short_id:
        return options.short_id
    number = int.from_bytes(hashlib.sha256(str(guild_id).encode()).digest()[:5], "big")
    digits = ""
    while number:
        number, digit = divmod(number, len(_ALPHABET))
        digits = _ALPHABET[digit] + digits
    return digits or "0"


def server_record(guild: discord.Guild, options: GuildOptions) -> dict[str, Any]:
    """The guild as ``get_server_data`` lists it; ``password`` stays inside the core."""
    record: dict[str, Any] = {
        "id": short_id(guild.id, options),
        "name": options.alias or guild.name,
        "passworded": options.passworded,
        "is_default": options.default,
        "enabled": options.enabled,
    }
    if options.password:
        record["password"] = options.password
    return record


def role_color(member: discord.Member) -> str | Literal[False]:
    """The colour of the member's highest coloured role, or False when no role has one."""
    colour = member.colour
    return f"#{colour.value:06x}" if colour.value else False


def is_ignored(member: discord.abc.User, options: GuildOptions) -> bool:
    return member.id in options.ignore_users or (options.ignore_bots and member.bot)


def hides_offline(guild: discord.Guild, options: GuildOptions) -> bool:
    """Offline members are left out: by choice, or because the guild is so large that its
    whole member list would not fit a join (``offline_above``, see README)."""
    return options.hide_offline or (guild.member_count or 0) > options.offline_above


def is_listed(member: discord.Member, options: GuildOptions) -> bool:
    """Whether the member has a character on the map right now."""
    if is_ignored(member, options):
        return False
    return not (member.status is discord.Status.offline and hides_offline(member.guild, options))


def user_record(member: discord.Member) -> dict[str, Any]:
    return {
        "uid": str(member.id),
        "username": member.display_name,
        "status": str(member.status),
        "roleColor": role_color(member),
    }


def presence_event(member: discord.Member, options: GuildOptions) -> Presence | None:
    """The event that shows ``member`` as they are now, or removes them when unlisted."""
    if is_ignored(member, options):
        return None
    server_id, uid = str(member.guild.id), str(member.id)
    if not is_listed(member, options):
        return Presence(server_id, uid, "offline", delete=True)
    return Presence(
        server_id,
        uid,
        str(member.status),
        username=member.display_name,
        role_color=role_color(member),
    )


def departure_event(member: discord.Member, options: GuildOptions) -> Presence | None:
    if is_ignored(member, options):
        return None
    return Presence(str(member.guild.id), str(member.id), "offline", delete=True)
