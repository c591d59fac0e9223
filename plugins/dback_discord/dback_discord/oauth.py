"""Checking a d-zone viewer's Discord login without letting viewers flood Discord.

The client sends the access token it got from Discord's OAuth flow (scopes ``identify`` and
``guilds``). ``GET /users/@me`` with it says whether Discord still accepts the token and
whose it is; ``GET /users/@me/guilds`` whether that user is in the guild. The user's id is
kept - it is what a kick or a ban names, so the viewer can be taken out live - the token
never. Every ``connect`` could cost such calls, and Discord bans an address (the bot's too)
after 10,000 invalid requests in 10 minutes, so the calls are guarded:

- verdicts are cached by a SHA-256 of the token (never the token): a token's user and guild
  list for ``admit_ttl`` seconds, a refused token for the longer ``refuse_ttl``; a repeated
  junk token costs nothing, and one check of a good token serves all its guilds;
- a cached admission is confirmed at each ``connect`` with one ``GET /users/@me`` when the
  limits below allow a call, so a token Discord no longer accepts is refused at once; when
  no call can be made (busy, Discord failing) the cached admission stands, for at most
  ``admit_ttl``;
- a member removal or ban the bot sees drops that user's cached admissions, and a check
  that was under way when it happened does not admit to that guild; a member joining a
  guild drops them too (their cached guild list is out of date);
- concurrent checks of one token share one call;
- a token with a cached verdict never waits for the limits below: its answer is at hand;
- outbound checks pass a global token bucket (``rate`` per second, ``burst``) and a cap on
  checks in flight (``concurrency``), shared fairly between the viewers' addresses: each
  address has its own short line, the lines are served in turn (``dback_core.plugin.fairness``),
  so an address flooding forged tokens gets no more than any other address that asks. An
  address with ``per_address`` checks in flight or waiting is refused at once with "login
  is busy", and so is a check whose turn did not come within ``wait`` seconds;
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
from dataclasses import dataclass

import aiohttp
from discord.http import Route

from dback_core import AccessRefused
from dback_core.plugin.fairness import FairTurns, TurnRefused
from dback_core.plugin.ratelimit import TokenBucket
from dback_discord.config import LoginLimits

log = logging.getLogger(__name__)

#: Under the core's 10 s limit for a hook, so a slow Discord gets the clear "cannot check"
#: refusal rather than the core's generic one.
TIMEOUT = aiohttp.ClientTimeout(total=5)

BUSY = "Discord login is busy; please try again in a few seconds."
UNAVAILABLE = "Discord cannot check logins right now; please try again later."

#: What an OAuth access token can look like; anything else is refused without a call.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9._~+/=-]{8,200}")


#: Seconds a removal seen is remembered, to correct checks that were under way meanwhile
#: (a check ends within ``TIMEOUT`` twice: two calls).
REMOVAL_MEMORY = 60.0


@dataclass(frozen=True, slots=True)
class Login:
    """What Discord said about a token: whose it is, and the guilds that user is in."""

    user_id: int
    guilds: frozenset[str]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A cached answer: the login, or None for a token Discord refused."""

    login: Login | None
    expires: float


class LoginChecks:
    """Answers "is this token's user in guild X, and who is it?" within ``LoginLimits``."""

    def __init__(self, session: aiohttp.ClientSession, limits: LoginLimits) -> None:
        self.session = session
        self.limits = limits
        self.turns = FairTurns(
            limits.concurrency,
            limits.per_address,
            bucket=TokenBucket(limits.rate, limits.burst),
            max_wait=limits.wait,
        )
        #: token hash -> verdict, oldest first
        self.verdicts: OrderedDict[str, Verdict] = OrderedDict()
        #: user id -> hashes of the tokens with a cached admission, to drop them on a removal
        self.tokens_of: dict[int, set[str]] = {}
        #: (user id, guild id) -> when the removal was seen (monotonic)
        self.removals: dict[tuple[int, str], float] = {}
        self.pending: dict[str, asyncio.Future[Login | None]] = {}
        self.blocked_until = 0.0

    async def member_of(self, token: str, guild_id: str, address: str) -> int | None:
        """The token's user id when that user is in ``guild_id``; None when Discord says the
        token is invalid or the user is not a member. ``address`` (the viewer's, as the core
        counts it) is whose share of the limits a call to Discord takes.

        Raises ``AccessRefused`` with ``BUSY`` or ``UNAVAILABLE`` when the answer cannot be had
        now: the viewer sees why and may try again.
        """
        if not _TOKEN_SHAPE.fullmatch(token):
            return None
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cached(key)
        if isinstance(cached, Verdict):
            login = cached.login
            admits = login is not None and guild_id in login.guilds
            if admits and not await self._still_accepted(key, token):
                login = None
        else:
            waiting = self.pending.get(key)
            if waiting is not None:
                login = await asyncio.shield(waiting)
            else:
                login = await self._check(key, token, address)
        if login is None or guild_id not in login.guilds:
            return None
        return login.user_id

    def member_joined(self, user_id: int) -> None:
        """The user joined a guild: their cached guild lists are out of date."""
        for key in self.tokens_of.pop(user_id, set()):
            self.verdicts.pop(key, None)

    def member_removed(self, user_id: int, guild_id: str) -> None:
        """The bot saw the user leave ``guild_id`` (kicked, banned, or left): no cached
        admission of theirs is used again, and no check under way admits them there."""
        now = time.monotonic()
        self.removals.pop((user_id, guild_id), None)  # re-added last: oldest stay first
        self.removals[(user_id, guild_id)] = now
        for key in self.tokens_of.pop(user_id, set()):
            self.verdicts.pop(key, None)
        while self.removals:
            oldest, seen = next(iter(self.removals.items()))
            if now - seen < REMOVAL_MEMORY:
                break
            del self.removals[oldest]

    def _cached(self, key: str) -> Verdict | None:
        found = self.verdicts.get(key)
        if found is None:
            return None
        if time.monotonic() >= found.expires:
            self._forget(key)
            return None
        return found

    def _forget(self, key: str) -> None:
        verdict = self.verdicts.pop(key, None)
        if verdict is not None and verdict.login is not None:
            keys = self.tokens_of.get(verdict.login.user_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.tokens_of[verdict.login.user_id]

    def _remember(self, key: str, login: Login | None) -> None:
        self._forget(key)
        ttl = self.limits.admit_ttl if login is not None else self.limits.refuse_ttl
        self.verdicts[key] = Verdict(login, time.monotonic() + ttl)
        if login is not None:
            self.tokens_of.setdefault(login.user_id, set()).add(key)
        while len(self.verdicts) > self.limits.cache_size:
            self._forget(next(iter(self.verdicts)))

    def _blocked(self) -> bool:
        """Whether Discord asked for a pause (a 429) that has not passed yet."""
        return time.monotonic() < self.blocked_until

    async def _still_accepted(self, key: str, token: str) -> bool:
        """Whether Discord still accepts a token with a cached admission. Only spare capacity
        is used - a turn free now that no uncached check waits for - so a cached token never
        waits; without one (the limits, Discord failing) the cached admission stands."""
        turn = None if self._blocked() else self.turns.spare()
        if turn is None:
            return True
        try:
            user_id = await self._user(token)
        except AccessRefused:
            return True
        finally:
            turn.release()
        if user_id is None:
            self._remember(key, None)
            return False
        return True

    async def _check(self, key: str, token: str, address: str) -> Login | None:
        if self._blocked():
            raise AccessRefused(BUSY)
        future: asyncio.Future[Login | None] = asyncio.get_running_loop().create_future()
        self.pending[key] = future
        try:
            login = await self._ask_in_turn(token, address)
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
            del self.pending[key]
        self._remember(key, login)
        future.set_result(login)
        return login

    async def _ask_in_turn(self, token: str, address: str) -> Login | None:
        """Wait for ``address``'s turn at the limits, then ask Discord."""
        try:
            turn = await self.turns.acquire(address)
        except TurnRefused:
            raise AccessRefused(BUSY) from None
        try:
            if self._blocked():  # a 429 arrived while this check waited
                raise AccessRefused(BUSY)
            asked_at = time.monotonic()
            login = await self._ask(token)
        finally:
            turn.release()
        return None if login is None else self._without_removals(login, asked_at)

    def _without_removals(self, login: Login, asked_at: float) -> Login:
        """``login`` less the guilds the user was seen leaving while it was being checked."""
        left = {
            guild_id
            for (user_id, guild_id), seen in self.removals.items()
            if user_id == login.user_id and seen >= asked_at
        }
        return Login(login.user_id, login.guilds - left) if left else login

    async def _ask(self, token: str) -> Login | None:
        """``GET /users/@me`` then ``GET /users/@me/guilds``: the login, or None for a token
        Discord refuses."""
        user_id = await self._user(token)
        if user_id is None:
            return None
        guilds = await self._get(token, "/users/@me/guilds")
        if guilds is None:
            return None
        if not isinstance(guilds, list):
            log.warning("discord: login check returned %s, not a list", type(guilds).__name__)
            raise AccessRefused(UNAVAILABLE)
        ids = frozenset(str(guild.get("id")) for guild in guilds if isinstance(guild, dict))
        return Login(user_id, ids)

    async def _user(self, token: str) -> int | None:
        """The token's own user id (``GET /users/@me``), or None when Discord refuses it."""
        user = await self._get(token, "/users/@me")
        if user is None:
            return None
        user_id = str(user.get("id", "")) if isinstance(user, dict) else ""
        if not user_id.isdigit():
            log.warning("discord: login check returned no user id; refused")
            raise AccessRefused(UNAVAILABLE)
        return int(user_id)

    async def _get(self, token: str, path: str) -> object | None:
        """One call with the viewer's token: the parsed body, or None for a token Discord
        refuses (401, 403)."""
        url = f"{Route.BASE}{path}"
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
                body: object = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.warning("discord: login check failed (%s); refused", type(error).__name__)
            raise AccessRefused(UNAVAILABLE) from None
        return body

    def _back_off(self, header: str | None, body: object) -> None:
        """Stop calling until Discord's ``Retry-After`` (header or body) has passed."""
        delay = _seconds(header)
        if delay is None and isinstance(body, dict):
            delay = _seconds(body.get("retry_after"))
        delay = 5.0 if delay is None else min(delay, 3600.0)
        self.blocked_until = max(self.blocked_until, time.monotonic() + delay)
        log.warning("discord: login checks rate limited by Discord; paused for %.1fs", delay)


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
