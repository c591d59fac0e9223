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
from dback_core.events import Event
from dback_discord.bot import DzoneClient, EventQueue
from dback_discord.config import TOKEN_ENV, GuildOptions, load_config
from dback_discord.oauth import LoginChecks
from dback_discord.records import is_listed, server_record, user_record

log = logging.getLogger(__name__)

INTENTS_HELP = (
    "Discord refused the privileged gateway intents (close code 4014). In the developer "
    "portal (https://discord.com/developers/applications) open this bot's application, "
    "go to Bot -> Privileged Gateway Intents, switch on 'Presence Intent', 'Server Members "
    "Intent' and 'Message Content Intent', save, and restart dback."
)


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


class DiscordUnavailable(RuntimeError):
    """The bot could not log in or connect; the message says why and what to do."""


class DiscordPlugin:
    """Every guild the bot is in, with live members, presences and chat."""

    def __init__(self) -> None:
        self.config = load_config()
        self.events = EventQueue()
        self.client: DzoneClient | None = None
        self.runner: asyncio.Task[None] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.logins: LoginChecks | None = None
        self.failure: str | None = None
        #: Set by ``shutdown``: the runner makes no further attempt.
        self.stopping = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    @hookimpl
    async def startup(self, settings: Any) -> None:
        """Log the bot in and wait for its first guild snapshot, within the hook's time limit.

        A bot that is not ready in time (or cannot reach Discord yet) keeps connecting; its
        guilds appear when it is ready.
        """
        self.failure = None
        self.stopping = asyncio.Event()
        self.session = aiohttp.ClientSession()
        self.logins = LoginChecks(self.session, self.config.login)
        self.client = DzoneClient(self.config, self.events)
        self.runner = asyncio.create_task(self._run(), name="dback-discord-client")
        limit = float(getattr(settings, "provider_timeout", 10.0))
        ready = asyncio.create_task(self.client.first_ready.wait())
        done, _ = await asyncio.wait(
            {self.runner, ready}, timeout=max(limit - 1.0, limit / 2), return_when="FIRST_COMPLETED"
        )
        ready.cancel()
        if self.runner in done:
            raise DiscordUnavailable(self.failure or "the Discord client stopped")
        if ready not in done:
            log.warning("discord: not ready yet; its guilds appear once it is")

    async def _run(self) -> None:
        """Run the client until it is closed; a fatal error is logged once, clearly.

        A Discord that cannot be reached is tried again with a doubling delay, each time
        with a new client (a closed discord.Client cannot start again): without this, a
        network hiccup while dback starts would leave it without Discord until restarted.
        """
        delay = RETRY_FIRST
        while self.client is not None:
            client = self.client
            try:
                await client.start(self.config.token)
                return
            except discord.PrivilegedIntentsRequired:
                self.failure = INTENTS_HELP
            except discord.LoginFailure:
                self.failure = f"Discord refused the bot token in {TOKEN_ENV}"
            except UNREACHABLE as error:
                log.warning(
                    "discord: cannot reach Discord (%s: %s); next attempt in %gs",
                    type(error).__name__,
                    error,
                    delay,
                )
            except Exception as error:
                self.failure = f"the Discord client stopped: {type(error).__name__}: {error}"
            finally:
                if not client.is_closed():
                    await client.close()
            if self.failure:
                log.error("discord: %s", self.failure)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            if self.stopping.is_set():
                return
            delay = min(delay * 2, RETRY_MAX)
            self.client = DzoneClient(self.config, self.events)

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
        self.client = self.runner = self.session = self.logins = None

    # -- data ------------------------------------------------------------------------------

    def _guild(self, server_id: Any) -> tuple[discord.Guild, GuildOptions] | None:
        text = str(server_id).strip() if server_id is not None else ""
        if self.client is None or not text.isdigit():
            return None
        guild = self.client.get_guild(int(text))
        if guild is None:
            return None
        return guild, self.config.guild(guild.id)

    @hookimpl
    def get_server_data(self, server_id: str | None) -> dict[str, dict[str, Any]] | None:
        if self.client is None:
            return None
        guilds = self.client.guilds
        if server_id is not None:
            guilds = [guild for guild in guilds if str(guild.id) == str(server_id)]
        return {
            str(guild.id): server_record(guild, self.config.guild(guild.id)) for guild in guilds
        }

    @hookimpl
    def get_user_data(self, server_id: str) -> dict[str, dict[str, Any]] | None:
        found = self._guild(server_id)
        if found is None:
            return None
        guild, options = found
        return {
            str(member.id): user_record(member)
            for member in guild.members
            if is_listed(member, options)
        }

    @hookimpl
    def event_sources(self) -> list[Any]:
        return [self.discord_events]

    async def discord_events(self) -> AsyncIterator[Event]:
        while True:
            yield await self.events.take()

    # -- access ----------------------------------------------------------------------------

    @hookimpl
    async def authorize(self, server_id: str, credentials: dict[str, Any]) -> bool | None:
        """For guilds with ``discord_login``: admit members of the guild, refuse the rest."""
        found = self._guild(server_id)
        if found is None or not found[1].discord_login:
            return None
        token = credentials.get("discordToken")
        if not isinstance(token, str) or not token.strip() or self.logins is None:
            return False
        return await self.logins.is_guild_member(token.strip(), str(found[0].id))

    @hookimpl
    def get_client_id(self, server_id: str) -> str | None:
        found = self._guild(server_id)
        return found[1].client_id if found is not None else None
