"""The Discord plugin's hooks: a discord.py bot run inside dback's event loop.

Settings (environment):
    DBACK_DISCORD_TOKEN   the bot token (required; without it the plugin is "not configured")
    DBACK_DISCORD_CONFIG  path of an optional TOML file with per-guild options (see README)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord

from dback_core import hookimpl
from dback_core.plugin.backoff import Backoff
from dback_core.plugin.events import Event
from dback_core.plugin.health import FAILED, SERVING, UNAVAILABLE
from dback_core.plugin.host import PluginHost
from dback_core.plugin.server_settings import Settings
from dback_discord.bot import DzoneClient, EventQueue, ShardedDzoneClient
from dback_discord.config import SETTINGS, TOKEN_ENV, GuildOptions, load_config
from dback_discord.library_logs import quiet_discord_logs
from dback_discord.live_logins import LiveLogins
from dback_discord.message_content import MessageContent
from dback_discord.oauth import LoginChecks
from dback_discord.records import is_listed, server_record, user_record
from dback_discord.session_starts import SessionStartsSpent
from dback_discord.shards import AUTO

log = logging.getLogger(__name__)

INTENTS_HELP = (
    "Discord refused the privileged gateway intents (close code 4014). In the developer "
    "portal (https://discord.com/developers/applications) open this bot's application, "
    "go to Bot -> Privileged Gateway Intents, switch on 'Presence Intent', 'Server Members "
    "Intent' and 'Message Content Intent', and save (a bot in 100 or more guilds also needs "
    "Discord's approval). dback tries again by itself, less often each time."
)
TOKEN_HELP = (
    f"Discord refused the bot token in {TOKEN_ENV}. In the developer portal open the bot's "
    f"application, go to Bot -> Reset Token, put the new token in {TOKEN_ENV} and restart dback."
)
TOKEN_RESET_HELP = (
    "Discord ended the session with close code 4004 (authentication failed): the bot token "
    f"was reset or revoked. Put the bot's current token in {TOKEN_ENV} and restart dback; "
    "until then no Discord guild is served."
)

SHARDING_HELP = (
    "Discord refused {shards} shard(s) as too few (close code 4011), though it recommends "
    "{recommended} in GET /gateway/bot; dback tries again with its recommendation, less "
    "often each time"
)


#: Members turned into records between two yields to the event loop (about 5 ms of work).
BUILD_SLICE = 1000

#: Seconds before the first new attempt after Discord could not be reached, and the most
#: the doubling delay grows to.
RETRY_FIRST = 1.0
RETRY_MAX = 60.0

#: What a Discord that cannot be reached right now raises: refused or reset connections,
#: timeouts, 5xx answers. discord.py retries these itself once connected, not at login.
UNREACHABLE = (
    OSError,
    TimeoutError,
    aiohttp.ClientError,
    discord.GatewayNotFound,
    discord.DiscordServerError,
)


class DiscordPlugin:
    """Every guild the bot is in, with live members, presences and chat.

    Its health follows Discord (see README, "When Discord fails"): ``unavailable`` while
    Discord cannot be reached, ``failed`` - its guilds withdrawn - when Discord refuses the
    token or the intents; refused intents are retried slowly, a refused token is not.
    """

    dback_settings = SETTINGS
    dback_no_guilds_hint = (
        "the bot is in no guild its configuration allows: invite it to one; a guild it joins "
        "is served at once, without a restart"
    )

    def __init__(self) -> None:
        self.config = load_config()
        self.events = EventQueue()
        self.client: DzoneClient | None = None
        self.runner: asyncio.Task[None] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.logins: LoginChecks | None = None
        self.live_logins: LiveLogins | None = None
        self.host: PluginHost | None = None
        #: Set once the bot is ready or the first attempt failed: startup waits for it.
        self.settled = asyncio.Event()
        #: Set by ``shutdown``: the runner makes no further attempt.
        self.stopping = asyncio.Event()
        #: Waits before the next attempt at a Discord that cannot be reached, and after a
        #: refusal that may heal (intents switched off); both start over once connected.
        self.unreachable = Backoff(RETRY_FIRST, RETRY_MAX)
        self.refused = self._refused_backoff()
        #: Guilds whose joins were cut at ``max_listed`` (warned about once).
        self.capped: set[int] = set()
        #: Gateway connections to run: ``[bot] shards``, until Discord requires more (4011).
        self.shards: int | str = self.config.bot.shards
        self.message_content = MessageContent()

    @property
    def dback_detail(self) -> str | None:
        """The line the status page and ``/api/plugins`` show under the plugin: each shard's
        state, whether chat is off and why, the session starts left, and the bot's own part
        (channels relayed per guild, chat from members on no map); None before anything."""
        client = self.client
        parts = [self.message_content.detail()]
        if client is not None:
            parts += [
                client.shard_states.describe(),
                client.session_starts.describe(),
                client.detail(),
            ]
        return "; ".join(part for part in parts if part) or None

    # -- lifecycle -------------------------------------------------------------------------

    @hookimpl
    async def startup(self, settings: Settings, host: PluginHost) -> None:
        """Log the bot in and wait for its first guild snapshot, within the hook's time limit.

        A bot that is not ready in time (or cannot reach Discord yet) keeps connecting; its
        guilds appear when it is ready. A refusal by Discord is reported as the plugin's
        health, so the server starts and ``dback plugins`` / ``/api/plugins`` say why.
        """
        quiet_discord_logs()
        self.host = host
        self.settled = asyncio.Event()
        self.stopping = asyncio.Event()
        self.session = aiohttp.ClientSession()
        self.logins = LoginChecks(self.session, self.config.login)
        self.live_logins = LiveLogins(self.logins, host)
        self.runner = asyncio.create_task(self._run(), name="dback-discord-client")
        limit = settings.provider_timeout
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.settled.wait(), max(limit - 1.0, limit / 2))
        if not self.settled.is_set():
            log.warning("discord: not ready yet; its guilds appear once it is")

    def report(self, status: str, reason: str | None) -> None:
        """Tell the core how the plugin is; a bot that is ready or refused has settled."""
        if status == SERVING:
            self.settled.set()
            self._reset_delays()
            self.message_content.serving()
        elif status == FAILED:
            log.error("discord: %s", reason)
            self.settled.set()
        if self.host is not None:
            self.host.report_health(status, reason)

    def _refused_backoff(self) -> Backoff:
        bot = self.config.bot
        return Backoff(bot.failed_retry, max(bot.failed_retry, bot.failed_retry_max))

    def _reset_delays(self) -> None:
        """Connected (or starting): the next failure waits the shortest delay again."""
        self.unreachable.reset()
        self.refused.reset()

    def _new_client(self) -> DzoneClient:
        chat = self.message_content.asked
        client: DzoneClient
        if self.shards == 1:
            client = DzoneClient(self.config, self.events, self.report, chat=chat)
        else:
            count = None if self.shards == AUTO else int(self.shards)
            client = ShardedDzoneClient(
                self.config, self.events, self.report, chat=chat, shard_count=count
            )
        if self.live_logins is not None:
            client.memberships = self.live_logins.membership_changed
            client.members_reloaded = self.live_logins.members_reloaded
        return client

    def _shard_as_required(self, client: DzoneClient) -> bool:
        """Discord closed the gateway with 4011 (sharding required): run the count it
        recommends instead of ending the plugin. False when the client already ran that
        many: guessing higher counts would spend session starts on every guess."""
        count = client.recommended_shards
        if count <= client.shard_total:
            return False
        log.warning(
            "discord: Discord requires sharding (close code 4011); starting again with %d "
            'shards, as Discord recommends. Set [bot] shards = "auto" in %s to start so',
            count,
            self.config.source,
        )
        self.shards = count
        return True

    async def _run(self) -> None:
        """Run a client until it is closed, starting a new one after what can heal.

        A closed discord.Client cannot start again, so each attempt gets a new one. A
        Discord that cannot be reached is tried again with a doubling delay (1 s to a
        minute); refused intents, which heal when the operator flips the portal switches,
        with a slow one (``[bot] failed_retry``), after one immediate try without Message
        Content; a refused token never: only the operator can fix it, and Discord counts
        every failed login. Session starts near their reserve wait for Discord's reset;
        "sharding required" starts again at once with more shards.
        """
        # Made here, not in ``__init__``: tests shorten the module's delays after loading.
        self.unreachable = Backoff(RETRY_FIRST, RETRY_MAX)
        self.refused = self._refused_backoff()
        while not self.stopping.is_set():
            client = self.client = self._new_client()
            backoff = self.unreachable
            try:
                await client.start(self.config.token)
                if self.stopping.is_set():
                    return
                self.report(UNAVAILABLE, "the Discord client stopped; starting it again")
            except discord.PrivilegedIntentsRequired:
                if self.message_content.refused():
                    continue
                self.report(FAILED, INTENTS_HELP)
                backoff = self.refused
            except SessionStartsSpent as spent:
                self.report(FAILED, str(spent))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), spent.wait)
                continue
            except discord.LoginFailure:
                self.report(FAILED, TOKEN_HELP)
                return
            except discord.ConnectionClosed as error:
                if error.code == 4011 and self._shard_as_required(client):
                    continue
                if error.code == 4011:
                    # Discord's own count is refused: try again later, maybe it changed.
                    self.report(
                        FAILED,
                        SHARDING_HELP.format(
                            shards=client.shard_total, recommended=client.recommended_shards
                        ),
                    )
                    self.shards = AUTO
                    backoff = self.refused
                elif error.code == 4004:
                    self.report(FAILED, TOKEN_RESET_HELP)
                    return
                else:
                    self.report(FAILED, f"Discord closed the gateway with code {error.code}")
                    return
            except UNREACHABLE as error:
                reason = f"cannot reach Discord ({type(error).__name__}: {error})"
                log.warning("discord: %s; next attempt in %gs", reason, backoff.upcoming)
                self.report(UNAVAILABLE, reason)
                self.settled.set()
            except Exception as error:
                # Anything else (discord.py itself trips when its very first gateway
                # connection fails) is tried again like an unreachable Discord.
                reason = f"the Discord client stopped ({type(error).__name__}: {error})"
                log.warning(
                    "discord: %s; next attempt in %gs", reason, backoff.upcoming, exc_info=True
                )
                self.report(UNAVAILABLE, reason)
                self.settled.set()
            finally:
                if not client.is_closed():
                    await client.close()
            await backoff.sleep(self.stopping)

    @hookimpl
    async def shutdown(self) -> None:
        self.stopping.set()
        if self.client is not None:
            await self.client.close()
        if self.runner is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self.runner, 5)
        if self.session is not None:
            await self.session.close()
        self.client = self.runner = self.session = self.logins = self.live_logins = None

    # -- data ------------------------------------------------------------------------------

    def _served(self, guild: discord.Guild) -> bool:
        """Allowed by the configuration, and not in a Discord outage (its data would be
        frozen: it is withdrawn until Discord sends it again)."""
        return self.client is not None and not guild.unavailable and self.client.serves(guild.id)

    def _guild(self, server_id: Any) -> tuple[discord.Guild, GuildOptions] | None:
        text = str(server_id).strip() if server_id is not None else ""
        if self.client is None or not text.isdigit():
            return None
        guild = self.client.get_guild(int(text))
        if guild is None or not self._served(guild):
            return None
        return guild, self.config.guild(guild.id)

    @hookimpl
    def get_server_data(self, server_id: str | None) -> dict[str, dict[str, Any]] | None:
        if self.client is None:
            return None
        guilds = [guild for guild in self.client.guilds if self._served(guild)]
        if server_id is not None:
            guilds = [guild for guild in guilds if str(guild.id) == str(server_id)]
        return {
            str(guild.id): server_record(guild, self.config.guild(guild.id)) for guild in guilds
        }

    @hookimpl
    async def get_user_data(self, server_id: str) -> dict[str, dict[str, Any]] | None:
        """The guild's listed members, built ``BUILD_SLICE`` at a time with a yield to the
        event loop between slices: a 100k-member guild must not stall every viewer. At most
        ``max_listed`` are listed, so the join stays deliverable (see README)."""
        found = self._guild(server_id)
        if found is None:
            return None
        guild, options = found
        members = guild.members
        users: dict[str, dict[str, Any]] = {}
        left_out = 0
        for start in range(0, len(members), BUILD_SLICE):
            if start:
                await asyncio.sleep(0)
            for member in members[start : start + BUILD_SLICE]:
                if not is_listed(member, options):
                    continue
                if len(users) >= options.max_listed:
                    left_out += 1
                    continue
                users[str(member.id)] = user_record(member)
        if left_out and guild.id not in self.capped:
            self.capped.add(guild.id)
            log.warning(
                "discord: guild %d lists %d members, the most max_listed allows; %d more "
                "left out of joins",
                guild.id,
                len(users),
                left_out,
            )
        return users

    @hookimpl
    def event_sources(self) -> list[Any]:
        return [self.discord_events]

    async def discord_events(self) -> AsyncIterator[Event]:
        while True:
            yield await self.events.take()

    # -- access ----------------------------------------------------------------------------

    @hookimpl
    async def authorize(
        self, server_id: str, credentials: dict[str, Any], address: str
    ) -> bool | str | None:
        """For guilds with ``discord_login``: admit members of the guild, refuse the rest.

        A member is admitted under a grant naming their Discord user, so that a kick or a
        ban seen on the gateway takes them out while they watch (``LiveLogins``)."""
        found = self._guild(server_id)
        if found is None or not found[1].discord_login:
            return None
        token = credentials.get("discordToken")
        if not isinstance(token, str) or not token.strip():
            return False
        if self.logins is None or self.live_logins is None:
            return False
        guild_id = str(found[0].id)
        user_id = await self.logins.member_of(token.strip(), guild_id, address)
        if user_id is None:
            return False
        return self.live_logins.admit(guild_id, user_id)

    @hookimpl
    def get_client_id(self, server_id: str) -> str | None:
        found = self._guild(server_id)
        return found[1].client_id if found is not None else None
