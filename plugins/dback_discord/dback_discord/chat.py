"""Chat messages as people wrote them, and only from channels the configuration allows.

The text is discord.py's ``clean_content`` - mentions of members, roles and channels shown
as ``@name`` / ``#name`` the way the Discord client shows them, ``@everyone`` defused - with
custom emoji shown as ``:name:`` (as the original d-zone bot did), a short placeholder for a
message that is only attachments, and a length cap.

Channel filters fail closed: when any filter applies and the message's channel (or, for a
thread, its parent channel) is not known to discord.py's cache - an archived thread, a
channel the bot cannot see - the message is dropped rather than guessed at.
"""

from __future__ import annotations

import re

import discord

from dback_discord.config import GuildOptions, channel_name

#: Longest text shown; longer messages are cut and end with an ellipsis.
MAX_LENGTH = 300
ATTACHMENT = "[attachment]"

_CUSTOM_EMOJI = re.compile(r"<a?:([A-Za-z0-9_~]+):\d+>")


def message_text(message: discord.Message) -> str | None:
    """What the map shows for ``message``, or None when there is nothing to show."""
    text = _CUSTOM_EMOJI.sub(r":\1:", message.clean_content).strip()
    if not text and message.attachments:
        text = ATTACHMENT
    if not text:
        return None
    if len(text) > MAX_LENGTH:
        text = text[: MAX_LENGTH - 1].rstrip() + "…"
    return text


def channel_keys(channel: object, guild: discord.Guild) -> set[int | str] | None:
    """The ids and names the channel filters compare against: the channel's and, for a
    thread, its parent's. None when either cannot be resolved from the cache."""
    if isinstance(channel, discord.Thread):
        parent = guild.get_channel(channel.parent_id) if channel.parent_id else None
        if parent is None:
            return None
        return {channel.id, channel_name(channel.name), parent.id, channel_name(parent.name)}
    if isinstance(channel, discord.abc.GuildChannel) and guild.get_channel(channel.id):
        return {channel.id, channel_name(channel.name)}
    return None


def is_heard(message: discord.Message, guild: discord.Guild, options: GuildOptions) -> bool:
    """Whether the channel filters let ``message`` (sent in ``guild``) through."""
    if not options.filters_channels:
        return True
    keys = channel_keys(message.channel, guild)
    return keys is not None and options.hears_channel(keys)
