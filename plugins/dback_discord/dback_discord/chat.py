"""Chat messages as people wrote them, and only from channels that are relayed.

The text is discord.py's ``clean_content`` - mentions of members, roles and channels shown
as ``@name`` / ``#name`` the way the Discord client shows them, ``@everyone`` defused - with
custom emoji shown as ``:name:`` (as the original d-zone bot did), spoilers hidden behind a
placeholder (the Discord client hides them until clicked; a bubble cannot be clicked), a
short placeholder for a message that is only attachments or a sticker, and a length cap.

Which channels are relayed is ``visibility``'s decision; it fails closed: a channel (or a
thread's parent) unknown to discord.py's cache is not relayed.
"""

from __future__ import annotations

import re

import discord

from dback_discord.config import GuildOptions
from dback_discord.visibility import is_relayed

#: Longest text shown; longer messages are cut and end with an ellipsis.
MAX_LENGTH = 300
ATTACHMENT = "[attachment]"
SPOILER = "[spoiler]"
STICKER = "[sticker: {}]"

_CUSTOM_EMOJI = re.compile(r"<a?:([A-Za-z0-9_~]+):\d+>")
#: ``||hidden||``, also over several lines; ``\|\|`` is two plain bars in Discord.
_SPOILER = re.compile(r"(?<!\\)\|\|.+?(?<!\\)\|\|", re.DOTALL)


def message_text(message: discord.Message) -> str | None:
    """What the map shows for ``message``, or None when there is nothing to show."""
    text = _SPOILER.sub(SPOILER, _CUSTOM_EMOJI.sub(r":\1:", message.clean_content)).strip()
    if not text and message.stickers:
        text = STICKER.format(message.stickers[0].name)
    if not text and message.attachments:
        text = ATTACHMENT
    if not text:
        return None
    if len(text) > MAX_LENGTH:
        text = text[: MAX_LENGTH - 1].rstrip() + "…"
    return text


def is_heard(message: discord.Message, guild: discord.Guild, options: GuildOptions) -> bool:
    """Whether ``message`` (sent in ``guild``) is relayed from its channel, as it is now."""
    return is_relayed(message.channel.id, guild, options)
