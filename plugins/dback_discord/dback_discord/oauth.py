"""Checking a d-zone viewer's Discord login without letting viewers flood Discord.

The client sends the access token it got from Discord's OAuth flow (scope ``guilds``); one
``GET /users/@me/guilds`` with it answers "is this user in the guild?". Every ``connect``
could cost such a call, and Discord bans an address (the bot's too) after 10,000 invalid
requests in 10 minutes, so the calls are guarded:

- verdicts are cached by a SHA-256 of the token (never the token): a token's guild list for
  ``admit_ttl`` seconds, a refused token for the longer ``refuse_ttl``; a repeated junk
  token costs nothing, and one check of a good token serves all its guilds;
- concurrent checks of one token share one call;
- outbound calls pass a global token bucket (``rate`` per second, ``burst``) and a cap on
  calls in flight (``concurrency``); beyond them the viewer is refused at once with "login
  is busy" - nothing waits in a queue;
- a 429 stops every call until its ``Retry-After`` has passed;
- Discord failing (5xx, timeout, no connection) refuses the viewer with a clear message:
  a login that cannot be checked is never admitted.

The base URL is discord.py's own (``discord.http.Route.BASE``), so the check goes wherever
the bot's REST calls go. Tokens are never logged or stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import OrderedDict

import aiohttp
from discord.http import Route

from dback_core import AccessRefused
from dback_core.limits import TokenBucket
from dback_discord.config import LoginLimits

log = logging.getLogger(__name__)

#: Under the core's 10 s limit for a hook, so a slow Discord gets the clear "cannot check"
#: refusal rather than the core's generic one.
TIMEOUT = aiohttp.ClientTimeout(total=5)

BUSY = "Discord login is busy; please try again in a few seconds."
UNAVAILABLE = "Discord cannot check logins right now; please try again later."

#: What an OAuth access token can look like; anything else is refused without a call.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9._~+/=-]{8,200}")


class LoginChecks:
    """Answers "is this token's user in guild X?" within ``LoginLimits``."""

    def __init__(self, session: aiohttp.ClientSession, limits: LoginLimits) -> None:
        self.session = session
        self.limits = limits
        self.bucket = TokenBucket(limits.rate, limits.burst)
        #: token hash -> (its guild ids, or None when refused; monotonic expiry)
        self.verdicts: OrderedDict[str, tuple[frozenset[str] | None, float]] = OrderedDict()
        self.pending: dict[str, asyncio.Future[frozenset[str] | None]] = {}
        self.in_flight = 0
        self.blocked_until = 0.0

    async def is_guild_member(self, token: str, guild_id: str) -> bool:
        """True when the token's user is in ``guild_id``; False when Discord says not.

        Raises ``AccessRefused`` with ``BUSY`` or ``UNAVAILABLE`` when the answer cannot be had
        now: the viewer sees why and may try again.
        """
        if not _TOKEN_SHAPE.fullmatch(token):
            return False
        key = hashlib.sha256(token.encode()).hexdigest()
        guilds = self._cached(key)
        if guilds is _UNKNOWN:
            waiting = self.pending.get(key)
            if waiting is not None:
                guilds = await asyncio.shield(waiting)
            else:
                guilds = await self._check(key, token)
        return guilds is not None and guild_id in guilds

    def _cached(self, key: str) -> frozenset[str] | object | None:
        found = self.verdicts.get(key)
        if found is None:
            return _UNKNOWN
        guilds, expires = found
        if time.monotonic() >= expires:
            del self.verdicts[key]
            return _UNKNOWN
        return guilds

    def _remember(self, key: str, guilds: frozenset[str] | None) -> None:
        ttl = self.limits.admit_ttl if guilds is not None else self.limits.refuse_ttl
        self.verdicts[key] = (guilds, time.monotonic() + ttl)
        self.verdicts.move_to_end(key)
        while len(self.verdicts) > self.limits.cache_size:
            self.verdicts.popitem(last=False)

    async def _check(self, key: str, token: str) -> frozenset[str] | None:
        now = time.monotonic()
        if now < self.blocked_until:
            raise AccessRefused(BUSY)
        if self.in_flight >= self.limits.concurrency or not self.bucket.take():
            raise AccessRefused(BUSY)
        future: asyncio.Future[frozenset[str] | None] = asyncio.get_running_loop().create_future()
        self.pending[key] = future
        self.in_flight += 1
        try:
            guilds = await self._ask(token)
        except AccessRefused as refusal:
            future.set_exception(refusal)
            future.exception()  # retrieved here, so a future nobody shared logs nothing
            raise
        except BaseException:
            # Cancelled (the core's time limit, or shutdown): whoever shares the check
            # must not wait for an answer that will never come.
            future.set_exception(AccessRefused(UNAVAILABLE))
            future.exception()
            raise
        finally:
            self.in_flight -= 1
            del self.pending[key]
        self._remember(key, guilds)
        future.set_result(guilds)
        return guilds

    async def _ask(self, token: str) -> frozenset[str] | None:
        """One ``GET /users/@me/guilds``: the guild ids, or None for a token Discord refuses."""
        url = f"{Route.BASE}/users/@me/guilds"
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with self.session.get(url, headers=headers, timeout=TIMEOUT) as response:
                if response.status in (401, 403):
                    return None
                if response.status == 429:
                    self._back_off(response.headers.get("Retry-After"), await _body(response))
                    raise AccessRefused(BUSY)
                if response.status != 200:
                    log.warning("discord: login check answered HTTP %d; refused", response.status)
                    raise AccessRefused(UNAVAILABLE)
                guilds = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.warning("discord: login check failed (%s); refused", type(error).__name__)
            raise AccessRefused(UNAVAILABLE) from None
        if not isinstance(guilds, list):
            log.warning("discord: login check returned %s, not a list", type(guilds).__name__)
            raise AccessRefused(UNAVAILABLE)
        return frozenset(str(guild.get("id")) for guild in guilds if isinstance(guild, dict))

    def _back_off(self, header: str | None, body: object) -> None:
        """Stop calling until Discord's ``Retry-After`` (header or body) has passed."""
        delay = _seconds(header)
        if delay is None and isinstance(body, dict):
            delay = _seconds(body.get("retry_after"))
        delay = 5.0 if delay is None else min(delay, 3600.0)
        self.blocked_until = max(self.blocked_until, time.monotonic() + delay)
        log.warning("discord: login checks rate limited by Discord; paused for %.1fs", delay)


_UNKNOWN = object()


async def _body(response: aiohttp.ClientResponse) -> object:
    try:
        return await response.json(content_type=None)
    except ValueError:
        return None


def _seconds(value: object) -> float | None:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None
