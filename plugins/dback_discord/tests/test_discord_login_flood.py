"""One address flooding forged Discord tokens cannot lock anybody else out of Discord login:
the login budget is shared round-robin between addresses, and a token whose verdict is
cached skips the budget altogether. Real discord.py against the fake Discord, real
WebSocket clients from two loopback addresses, the plugin's default ``[login]`` limits."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import pytest
from discord_world import LOUNGE, discord_dback

from dback_core.testing import Client

log = logging.getLogger(__name__)

LOGIN_CONFIG = f"[guilds.{LOUNGE}]\ndiscord_login = true\n"
FLOODER, VIEWERS = "127.0.0.1", "127.0.0.2"
#: Forged logins per second on each flooding connection: under the message rate limit.
RATE = 4.5

pytestmark = pytest.mark.slow


async def forge(server, stop: asyncio.Event, numbers: itertools.count) -> list[str]:
    """One flooding connection: a new forged token ``RATE`` times a second until ``stop``."""
    answers = []
    async with Client(server, timeout=30, local_addr=(FLOODER, 0)) as client:
        while not stop.is_set():
            sent = time.monotonic()
            token = f"forged-token-{next(numbers):06d}"
            answers.append((await client.join(str(LOUNGE), discordToken=token))["type"])
            await asyncio.sleep(max(0.0, sent + 1 / RATE - time.monotonic()))
    return answers


async def log_in(server, token: str) -> tuple[str, float]:
    async with Client(server, timeout=30, local_addr=(VIEWERS, 0)) as client:
        started = time.perf_counter()
        answer = await client.join(str(LOUNGE), discordToken=token)
        return answer["type"], time.perf_counter() - started


async def test_fifty_connections_forging_tokens_leave_another_address_every_login(
    fake, monkeypatch, tmp_path
):
    tokens = [f"member-token-{n:04d}" for n in range(20)]
    fake.oauth_users = {token: [LOUNGE] for token in tokens}
    async with discord_dback(fake, monkeypatch, tmp_path, LOGIN_CONFIG) as server:
        stop = asyncio.Event()
        numbers = itertools.count()
        flood = [asyncio.create_task(forge(server, stop, numbers)) for _ in range(50)]
        await asyncio.sleep(1.0)  # the budget is spent and the flooder's line is full
        first = [await log_in(server, token) for token in tokens]
        again = [await log_in(server, token) for token in tokens]  # cached verdicts
        stop.set()
        forged = [kind for answers in await asyncio.gather(*flood) for kind in answers]
    calls = len(fake.oauth_requests)
    for name, logins in (("first", first), ("cached", again)):
        latencies = sorted(seconds for _, seconds in logins)
        log.info(
            "%s logins: %d of 20 admitted, median %.3f s, worst %.3f s",
            name,
            sum(kind == "server-join" for kind, _ in logins),
            latencies[10],
            latencies[-1],
        )
    log.info("%d forged logins, %d calls to Discord in all", len(forged), calls)
    assert [kind for kind, _ in first] == ["server-join"] * 20
    assert [kind for kind, _ in again] == ["server-join"] * 20
    assert len(forged) > 1000 and set(forged) == {"error"}
    assert fake.requests.count("GET /api/v10/users/@me/guilds") == 20  # one per real token
