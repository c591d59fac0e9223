"""The discord.py client: keeps the guild cache and turns gateway events into dback events.

Every handler only translates and queues; the core drains the queue through the plugin's
event source. The cache discord.py keeps (guilds, members, statuses, roles) is what
``get_server_data`` and ``get_user_data`` read, so no REST call is made per join.
"""

from __future__ import annotations

import asyncio
import logging

import discord

from dback_core.events import Event, Message, Refresh
from dback_discord.config import DiscordConfig
from dback_discord.records import departure_event, is_ignored, presence_event

log = logging.getLogger(__name__)

#: Events waiting for the core; beyond this the oldest are dropped and a refresh is queued.
QUEUE_LIMIT = 10_000
#: Reload the guild list (see ``EventQueue``).
LIST_REFRESH = Refresh(None)


class EventQueue:
    """The events waiting for the core, where a guild-list reload is never queued twice.

    Every guild that arrives asks for one, but one waiting is enough: it reads discord.py's
    cache when the core takes it, which is after every arrival that asked for it.
    """

    def __init__(self, maxsize: int = QUEUE_LIMIT) -> None:
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self._list_refresh_waiting = False

    @property
    def maxsize(self) -> int:
        return self._queue.maxsize

    def full(self) -> bool:
        return self._queue.full()

    def put_nowait(self, item: Event) -> None:
        if item == LIST_REFRESH:
            if self._list_refresh_waiting:
                return
            self._list_refresh_waiting = True
        self._queue.put_nowait(item)

    async def take(self) -> Event:
        """The next event, waiting for one; taking a list reload lets the next one queue."""
        item = await self._queue.get()
        if item == LIST_REFRESH:
            self._list_refresh_waiting = False
        return item

    def drain(self) -> list[Event]:
        """Remove and return everything waiting."""
        items = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        self._list_refresh_waiting = False
        return items


def required_intents() -> discord.Intents:
    """Guilds, members, presences and message text; the last three are privileged."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.members = True
    intents.presences = True
    intents.guild_messages = True
    intents.message_content = True
    return intents


class DzoneClient(discord.Client):
    """A discord.Client whose events feed ``events``, a queue of at most ``QUEUE_LIMIT``."""

    def __init__(self, config: DiscordConfig, events: EventQueue) -> None:
        super().__init__(
            intents=required_intents(),
            guild_ready_timeout=config.bot.guild_ready_timeout,
        )
        self.config = config
        self.events = events
        self.first_ready = asyncio.Event()

    def queue(self, event: Event | None) -> None:
        if event is None:
            return
        if self.events.full():
            # A consumer this far behind would show stale state anyway: drop and reload.
            log.warning("discord: %d events not consumed; reloading instead", self.events.maxsize)
            self.events.drain()
            reloads = [LIST_REFRESH] + [Refresh(str(guild.id)) for guild in self.guilds]
            for reload in reloads[: self.events.maxsize]:
                self.events.put_nowait(reload)
            return
        self.events.put_nowait(event)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if not initial:
            await asyncio.sleep(self.config.bot.reidentify_delay)

    # -- connection ------------------------------------------------------------------------

    async def on_ready(self) -> None:
        """After every identify (never after a resume): the cache was rebuilt from scratch.

        Events missed while disconnected are gone. Every guild of the new session has been
        reloaded by ``on_guild_available`` (or ``on_guild_join``) as its data arrived; the
        guild list is reloaded here too, for guilds the bot left meanwhile.
        """
        log.info("discord: logged in as %s, %d guilds", self.user, len(self.guilds))
        if self.first_ready.is_set():
            self.queue(LIST_REFRESH)
        self.first_ready.set()

    async def on_resumed(self) -> None:
        log.info("discord: session resumed")

    # -- guilds ----------------------------------------------------------------------------

    async def on_guild_available(self, guild: discord.Guild) -> None:
        """A guild's data arrived: on every identify, or later for a guild that READY or an
        outage left unavailable (listed without name or members until now)."""
        self.queue(LIST_REFRESH)
        self.queue(Refresh(str(guild.id)))

    async def on_guild_join(self, guild: discord.Guild) -> None:
        """A new guild, or one discord.py reports as joined when it arrives after READY."""
        self.queue(LIST_REFRESH)
        self.queue(Refresh(str(guild.id)))

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        self.queue(LIST_REFRESH)

    async def on_guild_update(self, before: discord.Guild, after: discord.Guild) -> None:
        self.queue(LIST_REFRESH)

    async def on_guild_role_update(self, before: discord.Role, after: discord.Role) -> None:
        if before.colour != after.colour:
            self.queue(Refresh(str(after.guild.id)))

    # -- members ---------------------------------------------------------------------------

    async def on_presence_update(self, before: discord.Member, after: discord.Member) -> None:
        self.queue(presence_event(after, self.config.guild(after.guild.id)))

    async def on_member_join(self, member: discord.Member) -> None:
        self.queue(presence_event(member, self.config.guild(member.guild.id)))

    async def on_member_update(self, before: discord.Member, after: discord.Member) -> None:
        """Nickname or roles changed: the name or colour on the map may have too."""
        self.queue(presence_event(after, self.config.guild(after.guild.id)))

    async def on_member_remove(self, member: discord.Member) -> None:
        self.queue(departure_event(member, self.config.guild(member.guild.id)))

    # -- chat ------------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        if message.guild is None or not message.content:
            return
        options = self.config.guild(message.guild.id)
        if is_ignored(message.author, options):
            return
        channel = message.channel
        channel_ids = {channel.id}
        parent_id = getattr(channel, "parent_id", None)
        if parent_id is not None:
            channel_ids.add(parent_id)
        if not options.hears_channel(channel_ids):
            return
        self.queue(
            Message(str(message.guild.id), str(message.author.id), message.content, str(channel.id))
        )
