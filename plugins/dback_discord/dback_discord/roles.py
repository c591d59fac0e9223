"""Role changes turned into per-member colour updates, coalesced.

A role's colour, position or deletion changes the colour of every member who has it (a
member's colour is that of their highest coloured role). Resending the whole world for it
costs megabytes per viewer in a large guild, so only the members with the role are sent
again, as ``presence`` events. A bot that recolours a role every second would still send
each of those members every second; so changes are collected per guild and sent once per
``interval``: at most one frame per member per interval, and the last colour always goes
out, because the flush reads the member as they are when it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import discord

#: Above this many members to recolour at once, one reload of the guild is cheaper than a
#: presence frame for each.
RELOAD_ABOVE = 2000


class Recolours:
    """Members whose colour may have changed, sent once per ``interval`` per guild."""

    def __init__(
        self,
        interval: float,
        send: Callable[[discord.Member], None],
        reload: Callable[[discord.Guild], None],
    ) -> None:
        self.interval = interval
        self.send = send
        self.reload = reload
        self.pending: dict[int, set[int]] = {}
        self.timers: dict[int, asyncio.TimerHandle] = {}

    def role_changed(self, role: discord.Role) -> None:
        """Every member who has ``role`` (also right after it was deleted) may change colour."""
        guild = role.guild
        members = {member.id for member in role.members}
        if not members:
            return
        self.pending.setdefault(guild.id, set()).update(members)
        if guild.id not in self.timers:
            loop = asyncio.get_running_loop()
            self.timers[guild.id] = loop.call_later(self.interval, self._flush, guild)

    def _flush(self, guild: discord.Guild) -> None:
        self.timers.pop(guild.id, None)
        members = self.pending.pop(guild.id, set())
        if len(members) > RELOAD_ABOVE:
            self.reload(guild)
            return
        for member_id in members:
            member = guild.get_member(member_id)
            if member is not None:
                self.send(member)

    def cancel(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        self.pending.clear()
