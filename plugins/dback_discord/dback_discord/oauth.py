"""Checking a d-zone viewer's Discord login: is the OAuth token's user in the guild?

The client sends the access token it got from Discord's OAuth flow (scope ``guilds``); one
``GET /users/@me/guilds`` with it answers the question. The base URL is discord.py's own
(``discord.http.Route.BASE``), so the check goes wherever the bot's REST calls go. Tokens
are never logged.
"""

from __future__ import annotations

import logging

import aiohttp
from discord.http import Route

log = logging.getLogger(__name__)

TIMEOUT = aiohttp.ClientTimeout(total=10)


async def is_guild_member(session: aiohttp.ClientSession, token: str, guild_id: str) -> bool:
    """True when the token is valid and its user is a member of ``guild_id``."""
    url = f"{Route.BASE}/users/@me/guilds"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with session.get(url, headers=headers, timeout=TIMEOUT) as response:
            if response.status in (401, 403):
                return False
            if response.status != 200:
                log.warning("discord: guild check answered HTTP %d; refused", response.status)
                return False
            guilds = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        log.warning("discord: guild check failed (%s); refused", type(error).__name__)
        return False
    if not isinstance(guilds, list):
        log.warning("discord: guild check returned %s, not a list; refused", type(guilds).__name__)
        return False
    return any(isinstance(guild, dict) and str(guild.get("id")) == guild_id for guild in guilds)
