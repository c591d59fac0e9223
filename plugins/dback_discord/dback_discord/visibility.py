"""Which channels' chat reaches the map: those the guild's readers can view, and those named.

A bot often has Administrator and so reads every channel, #staff and #mod-log included; the
map is watched by people who are not members at all. So a channel is relayed only when the
guild's *readers* can view it - ``@everyone`` by default, or the ``readers_role`` a
``discord_login`` guild chose - computed with Discord's permission algorithm from the roles
and the channel's permission overwrites. A thread or forum post follows its parent channel;
a private thread is never public. ``publish_channels`` names the channels relayed anyway,
and ``listen_channels`` / ``ignore_channels`` narrow the result further.

Every message is decided from discord.py's cache as it is when the message is handled,
which discord.py updates from CHANNEL_*, THREAD_* and GUILD_ROLE_* dispatches as they are
read: a channel locked is not relayed from the next message on. (discord.py runs handlers
as tasks, so a message read in the same instant as a lock is judged by the lock: the safe
side.) What cannot be resolved - a channel or parent the bot never saw, a readers role that
was deleted - is not relayed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import discord

from dback_discord.config import GuildOptions, channel_name

log = logging.getLogger(__name__)

VIEW_CHANNEL = discord.Permissions(view_channel=True).value
ADMINISTRATOR = discord.Permissions(administrator=True).value
#: Guilds the health detail names one by one; the rest are summed up.
DETAIL_GUILDS = 10


def readers(guild: discord.Guild, options: GuildOptions) -> discord.Role | None:
    """The role whose view makes a channel public; None when the configured one is gone."""
    if options.readers_role is None:
        return guild.default_role
    return guild.get_role(options.readers_role)


def can_view(channel: discord.abc.GuildChannel, role: discord.Role) -> bool:
    """Whether a member with only ``role`` (and ``@everyone``) may view ``channel``.

    Discord's order: the permissions of ``@everyone`` and the role; Administrator allows
    everything; then the channel's overwrite for ``@everyone``, then the one for the role,
    each removing what it denies and adding what it allows.
    """
    everyone = channel.guild.default_role
    permissions = everyone.permissions.value | role.permissions.value
    if permissions & ADMINISTRATOR:
        return True
    for target in (everyone,) if role == everyone else (everyone, role):
        allow, deny = channel.overwrites_for(target).pair()
        permissions = (permissions & ~deny.value) | allow.value
    return bool(permissions & VIEW_CHANNEL)


def _keys(channel: discord.abc.GuildChannel | discord.Thread) -> set[int | str]:
    return {channel.id, channel_name(channel.name)}


def is_relayed(channel_id: int, guild: discord.Guild, options: GuildOptions) -> bool:
    """Whether chat in the channel (or thread) ``channel_id`` of ``guild`` is shown."""
    channel = guild.get_channel_or_thread(channel_id)
    if channel is None or isinstance(channel, discord.CategoryChannel):
        return False
    if isinstance(channel, discord.Thread):
        parent = guild.get_channel(channel.parent_id)
        if parent is None:
            return False
        own = _keys(channel)
        keys = own | _keys(parent)
        # Naming a channel publishes its public threads; a private thread only by its own name.
        inherited = not channel.is_private()
        published = bool(own & options.publish_channels) or (
            inherited and bool(_keys(parent) & options.publish_channels)
        )
    else:
        parent, keys, inherited = channel, _keys(channel), True
        published = bool(keys & options.publish_channels)
    if options.filters_channels and not options.hears_channel(keys):
        return False
    if published:
        return True
    role = readers(guild, options)
    return inherited and role is not None and can_view(parent, role)


class RelayedChannels:
    """How many of each served guild's channels are relayed, for ``dback plugins``.

    Recounted on the events that can change it (channels, roles, guilds arriving); the
    relay decision itself never reads these numbers.
    """

    def __init__(self) -> None:
        #: Guild id -> (name shown, channels relayed, channels in all).
        self.counts: dict[int, tuple[str, int, int]] = {}
        self._role_missing: set[int] = set()
        self._listened_private: set[int] = set()

    def recount(self, guild: discord.Guild, options: GuildOptions) -> None:
        channels = [c for c in guild.channels if not isinstance(c, discord.CategoryChannel)]
        unrelayed = [c for c in channels if not is_relayed(c.id, guild, options)]
        relayed = len(channels) - len(unrelayed)
        self.counts[guild.id] = (options.alias or guild.name, relayed, len(channels))
        self._point_out_listened_private(guild, options, unrelayed)
        if readers(guild, options) is None and guild.id not in self._role_missing:
            self._role_missing.add(guild.id)
            log.warning(
                "discord: guild %d: readers_role %s is not a role of the guild; only "
                "publish_channels are relayed",
                guild.id,
                options.readers_role,
            )

    def _point_out_listened_private(
        self,
        guild: discord.Guild,
        options: GuildOptions,
        unrelayed: Sequence[discord.abc.GuildChannel],
    ) -> None:
        """``listen_channels`` naming a channel the readers cannot view only narrows: say
        once per channel how to publish it, since before the readers rule it was shown."""
        for channel in unrelayed:
            if channel.id in self._listened_private or not options.hears_channel(_keys(channel)):
                continue
            if options.listen_channels & _keys(channel):
                self._listened_private.add(channel.id)
                log.warning(
                    "discord: guild %d: #%s (%d) is in listen_channels but its readers cannot "
                    "view it, so it is not relayed; add it to publish_channels to relay it",
                    guild.id,
                    channel.name,
                    channel.id,
                )

    def forget(self, guild_id: int) -> None:
        self.counts.pop(guild_id, None)

    def describe(self) -> str | None:
        """``chat from Lounge 2/3 channels, Workshop 1/1``; beyond ``DETAIL_GUILDS`` guilds
        the rest are summed up."""
        if not self.counts:
            return None
        ordered = sorted(self.counts.values(), key=lambda count: count[0].casefold())
        named = [f"{name} {relayed}/{total}" for name, relayed, total in ordered[:DETAIL_GUILDS]]
        rest = ordered[DETAIL_GUILDS:]
        if rest:
            relayed = sum(count[1] for count in rest)
            total = sum(count[2] for count in rest)
            named.append(f"{len(rest)} more guilds {relayed}/{total}")
        return "chat relayed from channels: " + ", ".join(named)
