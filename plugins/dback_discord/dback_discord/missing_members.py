"""Members discord.py has not cached, asked for when they come online or speak.

discord.py drops a ``PRESENCE_UPDATE`` for a member it has not cached (its log says
"referencing an unknown member"), and Discord may send only the user's id in it. A member
list that never completed (a chunk timed out, a guild above Discord's limits) would then
leave members who come online, or speak, off the map for as long as the bot runs. So such
members are collected for ``WINDOW`` seconds and asked for in one gateway member request per
guild and ``BATCH`` users (``Guild.query_members`` with their ids, with presences, cached):
they arrive with their roles, nickname and status, join discord.py's cache - so later
joins list them too - and are shown like any member whose presence changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import discord

log = logging.getLogger(__name__)

#: Seconds unknown members are collected before one request asks for all of them.
WINDOW = 0.25
#: The most user ids one gateway member request may name (Discord's limit).
BATCH = 100


class MissingMembers:
    """Asks for members of served guilds that discord.py has not cached; ``found`` is told
    of each one that arrives."""

    def __init__(self, found: Callable[[discord.Member], None]) -> None:
        self.found = found
        #: guild -> user ids waiting for the next request
        self.wanted: dict[discord.Guild, set[int]] = {}
        #: (guild id, user id) asked for or waiting: never asked twice at once
        self.asking: set[tuple[int, int]] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def want(self, guild: discord.Guild, user_id: int) -> None:
        """``user_id`` is active in ``guild`` but not cached: ask for them soon."""
        if guild.get_member(user_id) is not None or (guild.id, user_id) in self.asking:
            return
        self.asking.add((guild.id, user_id))
        self.wanted.setdefault(guild, set()).add(user_id)
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(WINDOW, self._flush)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
        self.wanted.clear()
        self.asking.clear()

    def _flush(self) -> None:
        self.timer = None
        wanted, self.wanted = self.wanted, {}
        for guild, users in wanted.items():
            ids = sorted(users)
            for start in range(0, len(ids), BATCH):
                task = asyncio.create_task(self._ask(guild, ids[start : start + BATCH]))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def _ask(self, guild: discord.Guild, user_ids: list[int]) -> None:
        try:
            members = await guild.query_members(
                user_ids=user_ids, limit=len(user_ids), presences=True, cache=True
            )
        except (TimeoutError, discord.ClientException, RuntimeError) as error:
            log.warning(
                "discord: could not fetch %d uncached members of guild %d (%s); they appear "
                "when they next change",
                len(user_ids),
                guild.id,
                type(error).__name__,
            )
            members = []
        finally:
            self.asking.difference_update((guild.id, user_id) for user_id in user_ids)
        if members:
            log.info("discord: %d uncached members of guild %d fetched", len(members), guild.id)
        for member in members:
            self.found(member)
