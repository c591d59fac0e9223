"""The discord.py client: keeps the guild cache and turns gateway events into dback events.

Every handler only translates and queues; the core drains the queue through the plugin's
event source. The cache discord.py keeps (guilds, members, statuses, roles) is what
``get_server_data`` and ``get_user_data`` read, so no REST call is made per join.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import discord

from dback_core.plugin.events import Event, Message, Refresh
from dback_core.plugin.health import FAILED, SERVING, UNAVAILABLE
from dback_discord.chat import is_heard, message_text
from dback_discord.chunk_retries import ChunkRetries
from dback_discord.config import DiscordConfig
from dback_discord.delay import HeldMessages
from dback_discord.identify_pace import IdentifyPace
from dback_discord.missing_members import MissingMembers
from dback_discord.records import departure_event, is_ignored, is_listed, presence_event
from dback_discord.roles import Recolours
from dback_discord.session_starts import SessionBudget, SessionStartLimit
from dback_discord.shards import READY, RECONNECTING, ShardStates, sharding_count
from dback_discord.visibility import RelayedChannels

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


def required_intents(chat: bool = True) -> discord.Intents:
    """Guilds, members, presences and, with ``chat``, message text; members, presences and
    message content are privileged. Without chat no message is asked for at all."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.members = True
    intents.presences = True
    intents.guild_messages = chat
    intents.message_content = chat
    intents.moderation = True  # bans: a banned viewer is taken out at once (not privileged)
    return intents


#: Reports the plugin's health: ``(status, reason)``, see ``dback_core.plugin.health``.
HealthReport = Callable[[str, "str | None"], None]
#: Told that a user joined or left a guild: ``(guild id, user id, how)``, ``how`` being
#: ``joined``, ``removed`` or ``banned``.
MembershipReport = Callable[[int, int, str], None]


class DzoneClient(discord.Client):
    """A discord.Client whose events feed ``events``, a queue of at most ``QUEUE_LIMIT``.

    Only guilds the configuration allows are served (see ``DiscordConfig.allows``): the
    others' events are dropped here, and the plugin leaves them out of its guild list.
    """

    def __init__(
        self,
        config: DiscordConfig,
        events: EventQueue,
        health: HealthReport,
        *,
        chat: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(
            intents=required_intents(chat),
            guild_ready_timeout=config.bot.guild_ready_timeout,
            # Presences of members discord.py has not cached: see ``MissingMembers``.
            enable_raw_presences=True,
            **options,
        )
        self.config = config
        self.events = events
        self.health = health
        self.first_ready = asyncio.Event()
        #: Told of every member join, removal and ban, cached member or not (``LiveLogins``).
        self.memberships: MembershipReport | None = None
        #: Told when a guild's members were loaded afresh (after an identify): departures
        #: the gateway never sent while disconnected show there.
        self.members_reloaded: Callable[[discord.Guild], None] | None = None
        #: Whether anyone may invite the bot; until the application is read, assume so.
        self.bot_public = True
        self._skipped: set[int] = set()
        self._stale: asyncio.TimerHandle | None = None
        self.shard_states = ShardStates()
        self.session_starts = SessionBudget(config.bot.session_reserve)
        self.identify_pace = IdentifyPace(
            config.bot.reidentify_delay, config.bot.reidentify_max, config.bot.stable_session
        )
        #: The shard count ``GET /gateway/bot`` recommends (read in ``setup_hook``).
        self.recommended_shards = 1
        self.recolours = Recolours(
            config.bot.role_interval,
            lambda member: self.queue(presence_event(member, config.guild(member.guild.id))),
            lambda guild: self.queue(Refresh(str(guild.id))),
        )
        self.relayed = RelayedChannels()
        self.held = HeldMessages()
        #: Messages from members who are on no map (see ``on_message``), since start.
        self.unlisted_chat = 0
        self.chunk_retries = ChunkRetries(self, lambda guild: self.queue(Refresh(str(guild.id))))
        self.missing = MissingMembers(
            lambda member: self.queue(presence_event(member, config.guild(member.guild.id)))
        )

    async def close(self) -> None:
        self.recolours.cancel()
        self.held.cancel_all()
        self.chunk_retries.cancel()
        self.missing.cancel()
        if self._stale is not None:
            self._stale.cancel()
            self._stale = None
        await super().close()

    @property
    def sharded(self) -> bool:
        return isinstance(self, discord.AutoShardedClient)

    @property
    def shard_total(self) -> int:
        return (self.shard_count or 1) if self.sharded else 1

    async def setup_hook(self) -> None:
        """After login, before the gateway: read whether the bot is public, and the bot's
        gateway figures (recommended shards, session starts left).

        discord.py's login already fetched the application (``Client.application``); an
        application it could not read counts as public, the safe side. The first session
        starts are counted here, before any is spent: a budget already at its reserve
        raises ``SessionStartsSpent`` and no shard identifies.
        """
        application = self.application
        self.bot_public = application is None or bool(application.bot_public)
        log.info("discord: the bot is %s", "public" if self.bot_public else "private")
        self._chunk_with_presences()
        self.chunk_retries.install()
        shards, _url, limit = await self.http.get_bot_gateway()
        self.recommended_shards = max(1, int(shards))
        self.session_starts.update(SessionStartLimit.from_gateway(limit))
        if self.sharded and self.shard_count is None:
            self.shard_count = sharding_count(self.config.bot.shards, self.recommended_shards)
        self.session_starts.spend(self.shard_total)
        self.shard_states.expect(self.shard_total)
        log.info(
            "discord: %d gateway connection(s) (Discord recommends %d); %s",
            self.shard_total,
            self.recommended_shards,
            self.session_starts.describe(),
        )

    def _chunk_with_presences(self) -> None:
        """Ask for presences with every member chunk.

        Guilds over 75,000 members get no presences in GUILD_CREATE, and discord.py's own
        chunk request (``Guild.chunk``, run for every large guild at startup) does not ask
        for them: everyone would start offline. Discord sends them with the chunks when
        asked and the presences intent is granted, so the request is made to ask. This is
        the plugin's one use of a discord.py internal (``ConnectionState.chunker``, stable
        through 2.x); the tests run it against the real discord.py.
        """
        state = self._connection
        plain = state.chunker

        async def chunker(
            guild_id: int,
            query: str = "",
            limit: int = 0,
            presences: bool = False,
            *,
            nonce: str | None = None,
        ) -> None:
            await plain(guild_id, query, limit, presences or self.intents.presences, nonce=nonce)

        state.chunker = chunker  # type: ignore[method-assign]

    def serves(self, guild_id: int) -> bool:
        """Whether the guild is served; the first refusal of each guild is logged once."""
        if self.config.allows(guild_id, self.bot_public):
            return True
        if guild_id in self.config.guilds:
            return False  # its own table says enabled = false: nothing to point out
        if guild_id not in self._skipped:
            self._skipped.add(guild_id)
            guild = self.get_guild(guild_id)
            name = guild.name if guild is not None and guild.name else "?"
            level = logging.WARNING if self.bot_public else logging.INFO
            why = (
                "the bot is public (anyone can add it) and"
                if self.bot_public and self.config.serve_unlisted is None
                else "[defaults] enabled = false and"
            )
            log.log(
                level,
                "discord: not serving guild %r (%d): %s %s has no [guilds.%d] table; "
                "add that line to serve it",
                name,
                guild_id,
                why,
                self.config.source,
                guild_id,
            )
        return False

    def queue(self, event: Event | None) -> None:
        if event is None:
            return
        server_id = getattr(event, "server_id", None)
        if server_id is not None and not self.serves(int(server_id)):
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
        """Pace IDENTIFYs (see ``identify_pace``) and count the new sessions against the
        day's budget; the first of each shard was counted in ``setup_hook``."""
        shard = shard_id or 0
        step = self.identify_pace.next(shard, initial, self.session_starts.max_concurrency)
        if step.again:
            self.session_starts.spend()
            log.info(
                "discord: shard %d starts a new session (%d in a row without a stable one); "
                "identifying in %gs",
                shard,
                step.streak,
                step.delay,
            )
        if step.delay:
            await asyncio.sleep(step.delay)

    # -- connection ------------------------------------------------------------------------

    async def on_ready(self) -> None:
        """After every identify (never after a resume): the cache was rebuilt from scratch.

        Events missed while disconnected are gone. Every guild of the new session has been
        reloaded by ``on_guild_available`` (or ``on_guild_join``) as its data arrived; the
        guild list is reloaded here too, for guilds the bot left meanwhile. A sharded client
        says this once, when all its shards are first ready; each shard's own sessions are
        followed by ``on_shard_ready``.
        """
        log.info("discord: logged in as %s, %d guilds", self.user, len(self.guilds))
        if not self.sharded:
            self._session_ready(0)
        if self.first_ready.is_set():
            self.queue(LIST_REFRESH)
        self.first_ready.set()

    async def on_resumed(self) -> None:
        if not self.sharded:
            self._resumed(0)

    async def on_disconnect(self) -> None:
        if not self.sharded:
            self._lost(0)

    async def on_shard_ready(self, shard_id: int) -> None:
        """A shard's new session is up, its guilds loaded."""
        self._session_ready(shard_id)
        if self.first_ready.is_set():
            self.queue(LIST_REFRESH)

    async def on_shard_resumed(self, shard_id: int) -> None:
        self._resumed(shard_id)

    async def on_shard_disconnect(self, shard_id: int) -> None:
        self._lost(shard_id)

    def _session_ready(self, shard_id: int) -> None:
        self.identify_pace.ready(shard_id)
        self.shard_states.mark(shard_id, READY)
        if self.shard_states.all_ready():
            self._connected()

    def _resumed(self, shard_id: int) -> None:
        log.info("discord: shard %d resumed its session", shard_id)
        self.shard_states.mark(shard_id, READY)
        if self.shard_states.all_ready():
            self._connected()

    def _lost(self, shard_id: int) -> None:
        """discord.py reconnects by itself. If a shard takes ``unavailable_after`` seconds
        the plugin reports itself unavailable (``/readyz`` 503, last data still shown); after
        ``withdraw_after`` more it reports failed, which withdraws its guilds: a world that
        has not heard from Discord for minutes is not presented as live."""
        if self.is_closed():
            return
        self.shard_states.mark(shard_id, RECONNECTING)
        if self._stale is None:
            delay = self.config.bot.unavailable_after
            self._stale = asyncio.get_running_loop().call_later(delay, self._still_disconnected)

    def _still_disconnected(self) -> None:
        if self.is_closed():
            self._stale = None
            return
        self.health(UNAVAILABLE, "lost the connection to Discord; reconnecting")
        delay = self.config.bot.withdraw_after
        self._stale = asyncio.get_running_loop().call_later(delay, self._gone_too_long)

    def _gone_too_long(self) -> None:
        self._stale = None
        if not self.is_closed():
            seconds = self.config.bot.unavailable_after + self.config.bot.withdraw_after
            reason = (
                f"no connection to Discord for {seconds:g}s; its guilds are withdrawn until "
                "it is back (reconnecting)"
            )
            self.health(FAILED, reason)

    def _connected(self) -> None:
        if self._stale is not None:
            self._stale.cancel()
            self._stale = None
        self.health(SERVING, None)

    # -- guilds ----------------------------------------------------------------------------

    async def on_guild_available(self, guild: discord.Guild) -> None:
        """A guild's data arrived: on every identify, or later for a guild that READY or an
        outage left unavailable (withdrawn from the list until now)."""
        self.queue(LIST_REFRESH)
        self.queue(Refresh(str(guild.id)))
        self.recount(guild)
        if self.members_reloaded is not None:
            self.members_reloaded(guild)

    async def on_guild_unavailable(self, guild: discord.Guild) -> None:
        """A Discord outage took the guild away: withdraw it rather than show it frozen."""
        log.warning("discord: guild %d is unavailable (Discord outage); withdrawn", guild.id)
        self.queue(LIST_REFRESH)
        self.relayed.forget(guild.id)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        """A new guild, or one discord.py reports as joined when it arrives after READY."""
        self.queue(LIST_REFRESH)
        self.queue(Refresh(str(guild.id)))
        self.recount(guild)

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        self.queue(LIST_REFRESH)
        self.relayed.forget(guild.id)

    async def on_guild_update(self, before: discord.Guild, after: discord.Guild) -> None:
        self.queue(LIST_REFRESH)

    async def on_guild_role_create(self, role: discord.Role) -> None:
        self.recolours.role_changed(role)

    async def on_guild_role_update(self, before: discord.Role, after: discord.Role) -> None:
        """A colour or a place in the order decides members' colours; a name does not."""
        if before.colour != after.colour or before.position != after.position:
            self.recolours.role_changed(after)
        if before.permissions != after.permissions:
            self.recount(after.guild)

    async def on_guild_role_delete(self, role: discord.Role) -> None:
        self.recolours.role_changed(role)
        self.recount(role.guild)

    # -- channels --------------------------------------------------------------------------

    def recount(self, guild: discord.Guild) -> None:
        """Count the guild's relayed channels again (see ``visibility``): only the health
        detail reads the count, every message is decided afresh."""
        if self.serves(guild.id):
            self.relayed.recount(guild, self.config.guild(guild.id))
        else:
            self.relayed.forget(guild.id)

    async def on_guild_channel_create(self, channel: discord.abc.GuildChannel) -> None:
        self.recount(channel.guild)

    async def on_guild_channel_update(
        self, before: discord.abc.GuildChannel, after: discord.abc.GuildChannel
    ) -> None:
        """Overwrites changed, most likely: a channel locked is no longer relayed."""
        self.recount(after.guild)

    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        self.recount(channel.guild)

    def detail(self) -> str | None:
        """The plugin's detail line (status page, ``/api/plugins``): channels relayed per
        guild, chat dropped because its author is on no map, and member lists still
        incomplete because Discord rate limited them."""
        parts = [self.relayed.describe(), *self.chunk_retries.detail()]
        if self.unlisted_chat:
            parts.append(f"messages from members on no map dropped: {self.unlisted_chat}")
        return "; ".join(part for part in parts if part) or None

    # -- members ---------------------------------------------------------------------------

    async def on_presence_update(self, before: discord.Member, after: discord.Member) -> None:
        self.queue(presence_event(after, self.config.guild(after.guild.id)))

    async def on_raw_presence_update(self, payload: discord.RawPresenceUpdateEvent) -> None:
        """Every presence, cached member or not; only the uncached ones need anything here
        (discord.py drops their presence): they are asked for (``MissingMembers``)."""
        guild = payload.guild
        uncached = guild is not None and guild.get_member(payload.user_id) is None
        if guild is not None and uncached and self.serves(guild.id):
            self.missing.want(guild, payload.user_id)

    async def on_member_join(self, member: discord.Member) -> None:
        self.queue(presence_event(member, self.config.guild(member.guild.id)))
        if self.memberships is not None:
            self.memberships(member.guild.id, member.id, "joined")

    async def on_member_update(self, before: discord.Member, after: discord.Member) -> None:
        """Nickname or roles changed: the name or colour on the map may have too."""
        self.queue(presence_event(after, self.config.guild(after.guild.id)))

    async def on_member_remove(self, member: discord.Member) -> None:
        self.queue(departure_event(member, self.config.guild(member.guild.id)))

    async def on_raw_member_remove(self, payload: discord.RawMemberRemoveEvent) -> None:
        """Every removal, also of a member discord.py had not cached (``on_member_remove``
        is only called for cached ones): a logged-in viewer must not outstay it."""
        if self.memberships is not None:
            self.memberships(payload.guild_id, payload.user.id, "removed")

    async def on_member_ban(
        self, guild: discord.Guild, user: discord.Member | discord.User
    ) -> None:
        """Discord sends the ban before the removal; the viewer goes at the first."""
        if self.memberships is not None:
            self.memberships(guild.id, user.id, "banned")

    # -- chat ------------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        if message.guild is None:
            return
        author = message.author
        uncached = message.webhook_id is None and message.guild.get_member(author.id) is None
        if uncached and self.serves(message.guild.id):
            self.missing.want(message.guild, author.id)  # speaking, yet not cached
        options = self.config.guild(message.guild.id)
        if is_ignored(message.author, options) or not is_heard(message, message.guild, options):
            return
        if not self._on_a_map(message, message.guild):
            return
        text = message_text(message)
        if text is None:
            return
        event = Message(
            str(message.guild.id), str(message.author.id), text, str(message.channel.id)
        )
        if not options.chat_delay:
            self.queue(event)
        elif not self.held.hold(
            message.id, options.chat_delay, lambda: self._release(message, event)
        ):
            log.warning(
                "discord: %d messages already wait out chat_delay; one dropped", self.held.limit
            )

    def _on_a_map(self, message: discord.Message, guild: discord.Guild) -> bool:
        """Whether the author has a character on the map (the d-zone client ignores chat
        from anyone else): a cached member hidden while offline (``hide_offline``, or a
        guild over ``offline_above``) has none, so the message is counted and dropped."""
        member = guild.get_member(message.author.id)
        if member is None or is_listed(member, self.config.guild(guild.id)):
            return True
        self.unlisted_chat += 1
        log.debug(
            "discord: chat from member %d of guild %d not shown: offline and hidden, so on no map",
            member.id,
            guild.id,
        )
        return False

    def _release(self, message: discord.Message, event: Message) -> None:
        """The delay is over and the message was not deleted: show it if its channel is
        still relayed (it may have been locked meanwhile)."""
        guild = self.get_guild(message.guild.id) if message.guild is not None else None
        if guild is not None and is_heard(message, guild, self.config.guild(guild.id)):
            self.queue(event)

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        self.held.cancel(payload.message_id)

    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        for message_id in payload.message_ids:
            self.held.cancel(message_id)


class ShardedDzoneClient(DzoneClient, discord.AutoShardedClient):
    """The same client over several gateway connections (discord.py's sharded client).

    ``shard_count`` None means Discord's recommended count, resolved in ``setup_hook``
    from the same ``GET /gateway/bot`` answer that gives the session starts.
    """
