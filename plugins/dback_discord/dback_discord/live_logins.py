"""Viewers admitted by Discord login, followed while they watch.

A login is checked when the viewer connects; a member kicked or banned afterwards would
otherwise keep watching the guild - its presences and chat - for as long as the connection
lasts. So each admission is made under a grant naming the Discord user (never the token),
and when the gateway says that user left the guild (GUILD_MEMBER_REMOVE, GUILD_BAN_ADD) the
core takes every viewer admitted under it out of the guild at once, with an ``error``; the
login cache forgets the user's admissions too, so the next ``connect`` asks Discord again.
A member who joins a guild has their cached guild list forgotten likewise, so a member who
was kicked and came back is let in at once rather than after ``admit_ttl``. Removals the
gateway never sent (they happened while the bot had to identify again) are found when the
guild's member list arrives afresh: an admitted user no longer in a complete list left.
"""

from __future__ import annotations

import logging

import discord

from dback_core.plugin.host import PluginHost
from dback_discord.oauth import LoginChecks

log = logging.getLogger(__name__)

#: What a viewer taken out of a guild it no longer belongs to is told.
REMOVED = "You are no longer a member of this Discord server."


#: ``how`` for a member who joined a guild.
JOINED = "joined"


def grant(user_id: int) -> str:
    """The grant a viewer logged in as ``user_id`` is admitted under."""
    return f"discord-user:{user_id}"


class LiveLogins:
    """Who was admitted where by Discord login, and the revocation when they leave."""

    def __init__(self, logins: LoginChecks, host: PluginHost | None) -> None:
        self.logins = logins
        self.host = host
        #: guild id -> users admitted to it by login since they last left it; only their
        #: departures cost the core a look at its viewers.
        self.admitted: dict[str, set[int]] = {}

    def admit(self, guild_id: str, user_id: int) -> str:
        """Note the admission; the grant to return from ``authorize``."""
        self.admitted.setdefault(guild_id, set()).add(user_id)
        return grant(user_id)

    def membership_changed(self, guild_id: int, user_id: int, how: str) -> None:
        """The gateway says ``user_id`` joined, was removed from or banned from ``guild_id``
        (``how``: ``joined``, ``removed``, ``banned``)."""
        key = str(guild_id)
        if how == JOINED:
            self.logins.member_joined(user_id)
            return
        self.logins.member_removed(user_id, key)
        users = self.admitted.get(key)
        if users is None or user_id not in users:
            return
        users.discard(user_id)
        if not users:
            del self.admitted[key]
        if self.host is None:
            return
        taken_out = self.host.revoke(key, grant(user_id), REMOVED)
        log.info(
            "discord: a logged-in member was %s from guild %d; %d viewer admissions revoked",
            how,
            guild_id,
            taken_out,
        )

    def members_reloaded(self, guild: discord.Guild) -> None:
        """``guild``'s members arrived afresh: admitted users missing from its complete
        member list left while the bot was not listening. An incomplete list (chunks still
        missing) proves nothing and is skipped."""
        users = self.admitted.get(str(guild.id))
        if not users or not guild.chunked:
            return
        for user_id in [user_id for user_id in users if guild.get_member(user_id) is None]:
            self.membership_changed(guild.id, user_id, "removed")
