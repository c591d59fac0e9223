"""Member lists Discord refused to send yet: asked for again until they are complete.

A large guild's members arrive in chunks the bot asks for (gateway opcode 8). Discord may
answer such a request with a ``RATE_LIMITED`` dispatch (``opcode`` 8, ``retry_after``,
``meta.guild_id`` and ``meta.nonce``) instead of the chunks. discord.py (2.x) does not handle
that event: its request would wait until its timeout, the guild would be served with the
members it happened to have, and the others would be missing for as long as the bot runs.
Here each such answer schedules the same request again after ``retry_after`` - doubled
for every further refusal in a row, up to ``RETRY_MAX`` - until the chunks arrive; then the
guild is reloaded, so viewers get the complete list. Meanwhile ``detail`` says which guilds
are incomplete (shown by ``dback plugins`` and the status page).

This relies on discord.py internals (``ConnectionState.parsers``, ``_chunk_requests``,
``chunker``, ``chunk_guild``), stable through 2.x; the tests run it against the real
discord.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import discord

log = logging.getLogger(__name__)

#: The longest wait before asking again, however often Discord refused.
RETRY_MAX = 60.0
#: The wait when Discord's answer names none (or a nonsensical one).
RETRY_DEFAULT = 5.0
#: The gateway opcode of a member request (REQUEST_GUILD_MEMBERS).
REQUEST_MEMBERS = 8


class ChunkRetries:
    """The member requests of ``client`` that Discord rate limited, and their retries."""

    def __init__(self, client: discord.Client, complete: Callable[[discord.Guild], None]) -> None:
        self.client = client
        self.complete = complete
        #: guild id -> refusals in a row
        self.refusals: dict[int, int] = {}
        self.retries: dict[int, asyncio.Task[None]] = {}

    def install(self) -> None:
        """Have discord.py's gateway hand ``RATE_LIMITED`` dispatches to ``rate_limited``."""
        self.client._connection.parsers["RATE_LIMITED"] = self.rate_limited

    def cancel(self) -> None:
        for task in self.retries.values():
            task.cancel()
        self.retries.clear()
        self.refusals.clear()

    def detail(self) -> list[str]:
        """One line per guild whose member list is incomplete: ``Big: members 103/403,
        retrying``."""
        lines = []
        for guild_id in sorted(self.refusals):
            guild = self.client.get_guild(guild_id)
            if guild is not None:
                total = guild.member_count if guild.member_count is not None else "?"
                name = guild.name or str(guild_id)
                lines.append(f"{name}: members {len(guild.members)}/{total}, retrying")
        return lines

    def rate_limited(self, data: Any) -> None:
        """A ``RATE_LIMITED`` dispatch: if it answers a member request, ask again later."""
        if not isinstance(data, dict) or data.get("opcode") != REQUEST_MEMBERS:
            return
        meta = data.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        guild_text = str(meta.get("guild_id", ""))
        if not guild_text.isdigit():
            return
        guild_id = int(guild_text)
        nonce = meta.get("nonce") if isinstance(meta.get("nonce"), str) else None
        refusals = self.refusals.get(guild_id, 0) + 1
        self.refusals[guild_id] = refusals
        delay = min(RETRY_MAX, _seconds(data.get("retry_after")) * 2 ** (refusals - 1))
        log.log(
            logging.WARNING if refusals == 1 else logging.INFO,
            "discord: Discord rate limited the member list of guild %d (%d in a row); "
            "asking again in %.1fs",
            guild_id,
            refusals,
            delay,
        )
        previous = self.retries.pop(guild_id, None)
        if previous is not None:
            previous.cancel()
        self.retries[guild_id] = asyncio.create_task(
            self._ask_again(guild_id, nonce, delay), name=f"dback-discord-chunks-{guild_id}"
        )

    async def _ask_again(self, guild_id: int, nonce: str | None, delay: float) -> None:
        await asyncio.sleep(delay)
        guild = self.client.get_guild(guild_id)
        if guild is None:
            self._done(guild_id)
            return
        state = self.client._connection
        pending = state._chunk_requests.get(guild_id)
        if pending is not None and (nonce is None or pending.nonce == nonce):
            # discord.py still waits for this request: the same one asked again, so the
            # chunks land in its cache and its waiters are woken.
            answered = pending.get_future()
            await state.chunker(guild_id, nonce=pending.nonce)
        elif pending is None:
            answered = await state.chunk_guild(guild, wait=False)
        else:
            answered = pending.get_future()  # another request for the guild is under way
        await answered
        self._done(guild_id)
        log.info(
            "discord: member list of guild %d complete after rate limits: %d members",
            guild_id,
            len(guild.members),
        )
        self.complete(guild)

    def _done(self, guild_id: int) -> None:
        self.refusals.pop(guild_id, None)
        task = self.retries.pop(guild_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()


def _seconds(value: object) -> float:
    """Discord's ``retry_after`` in seconds, or ``RETRY_DEFAULT`` when it is not usable."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return RETRY_DEFAULT
    return seconds if 0 <= seconds <= RETRY_MAX else RETRY_DEFAULT
