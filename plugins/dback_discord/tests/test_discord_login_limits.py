"""Viewers' Discord logins cannot make the bot flood Discord with token checks."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from discord_world import LOUNGE, discord_dback

from dback_core.testing import Client

LOGIN_CONFIG = f"[guilds.{LOUNGE}]\ndiscord_login = true\n"
CHECK = "GET /api/v10/users/@me/guilds"


async def join_until_admitted(client: Client, token: str, attempts: int = 40) -> list[dict]:
    """Join with ``token`` until admitted, a tenth of a second apart; every answer in order."""
    answers = []
    for _ in range(attempts):
        answers.append(await client.join(str(LOUNGE), discordToken=token))
        if answers[-1]["type"] == "server-join":
            break
        await asyncio.sleep(0.1)
    return answers


@pytest.mark.slow
async def test_a_flood_of_junk_and_forged_tokens_costs_no_more_than_the_rate_allows(
    fake, monkeypatch, tmp_path, caplog
):
    """10 connections x 20 junk tokens, then 300 forged tokens, all from one address: the
    calls to Discord stay within ``burst`` plus ``rate`` per second of the flood (a short
    ``wait`` keeps the flood quick: each forged login waits at most 0.2 s for its turn)."""
    caplog.set_level(logging.DEBUG)
    fake.oauth_users = {"good-token-abcdef": [LOUNGE]}
    junk = [f"junk-token-{number:04d}" for number in range(20)]
    forged = [f"forged-token-{number:05d}" for number in range(300)]
    config = LOGIN_CONFIG + "[login]\nwait = 0.2\n"
    async with discord_dback(
        fake, monkeypatch, tmp_path, config, message_rate=10_000, message_burst=10_000
    ) as server:

        async def attack(tokens: list[str]) -> list[str]:
            async with Client(server) as client:
                return [
                    (await client.join(str(LOUNGE), discordToken=token))["data"]["message"]
                    for token in tokens
                ]

        started = time.monotonic()
        junk_answers = await asyncio.gather(*(attack(junk) for _ in range(10)))
        forged_answers = await asyncio.gather(*(attack(forged[i::10]) for i in range(10)))
        elapsed = time.monotonic() - started
        checks = len(fake.oauth_requests)
        async with Client(server) as client:
            admitted = await join_until_admitted(client, "good-token-abcdef")
    answers = [message for batch in junk_answers + forged_answers for message in batch]
    busy = sum("busy" in message for message in answers)
    logging.getLogger(__name__).info(
        "500 junk/forged logins in %.1f s: %d calls sent to Discord, %d answered busy",
        elapsed,
        checks,
        busy,
    )
    assert len(answers) == 500 and busy > 0
    assert checks <= 5 + 2 * elapsed + 1, (checks, elapsed)
    assert admitted[-1]["type"] == "server-join"
    assert len(fake.oauth_requests) <= checks + 2 * len(admitted)
    server_logs = "\n".join(
        record.getMessage() for record in caplog.records if record.name != "websockets.client"
    )
    assert "junk-token" not in server_logs and "good-token-abcdef" not in server_logs


async def test_verdicts_are_cached_so_repeats_cost_one_light_call(fake, monkeypatch, tmp_path):
    """A refused token costs nothing again; an admitted one's guild list is not asked again,
    only whether Discord still accepts the token (one ``GET /users/@me`` per connect, the
    bucket permitting: here it is wide, so every connect asks)."""
    fake.oauth_users = {"member-token-1234": [LOUNGE]}
    config = LOGIN_CONFIG + "[login]\nrate = 100\nburst = 100\n"
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        for _ in range(5):
            async with Client(server) as client:
                refused = await client.join(str(LOUNGE), discordToken="expired-token-99")
                admitted = await client.join(str(LOUNGE), discordToken="member-token-1234")
                assert refused["type"] == "error" and admitted["type"] == "server-join"
    assert fake.oauth_requests.count("/users/@me/guilds") == 1
    assert fake.oauth_requests.count("/users/@me") == 1 + 5  # the junk token once, then 5


async def test_a_login_waits_briefly_for_its_turn_then_is_told_login_is_busy(
    fake, monkeypatch, tmp_path
):
    """With a budget of 2 checks and one more every 2 s, a third login waits ``wait``
    (0.3 s) for its turn, which does not come: refused as busy, and no call is made."""
    fake.oauth_users = {f"member-token-{n:04d}": [LOUNGE] for n in range(10)}
    config = LOGIN_CONFIG + "[login]\nrate = 0.5\nburst = 2\nwait = 0.3\n"
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        answers = []
        for number in range(4):
            async with Client(server) as client:  # a new viewer: nothing unlocked yet
                token = f"member-token-{number:04d}"
                answers.append(await client.join(str(LOUNGE), discordToken=token))
    assert [answer["type"] for answer in answers] == ["server-join"] * 2 + ["error"] * 2
    assert "busy" in answers[2]["data"]["message"] and "try again" in answers[2]["data"]["message"]
    assert fake.requests.count(CHECK) == 2


async def test_logins_beyond_an_address_s_share_are_refused_at_once(fake, monkeypatch, tmp_path):
    """``per_address`` (2) checks of one address in flight: the other three of five logins
    from that address at once are refused without waiting."""
    fake.oauth_users = {f"member-token-{n:04d}": [LOUNGE] for n in range(5)}
    fake.oauth_delay = 0.5
    async with discord_dback(fake, monkeypatch, tmp_path, LOGIN_CONFIG) as server:

        async def log_in(number: int) -> dict:
            async with Client(server) as client:
                return await client.join(str(LOUNGE), discordToken=f"member-token-{number:04d}")

        answers = await asyncio.gather(*(log_in(number) for number in range(5)))
    kinds = sorted(answer["type"] for answer in answers)
    assert kinds == ["error"] * 3 + ["server-join"] * 2
    assert all("busy" in a["data"]["message"] for a in answers if a["type"] == "error")
    assert fake.requests.count(CHECK) == 2


@pytest.mark.slow
async def test_discord_rate_limits_are_honoured_until_retry_after(fake, monkeypatch, tmp_path):
    fake.oauth_users = {"member-token-1234": [LOUNGE], "other-member-5678": [LOUNGE]}
    fake.oauth_retry_after = 0.6
    async with discord_dback(fake, monkeypatch, tmp_path, LOGIN_CONFIG) as server:
        async with Client(server) as client:
            limited = await client.join(str(LOUNGE), discordToken="member-token-1234")
            fake.oauth_retry_after = None
            waiting = await client.join(str(LOUNGE), discordToken="other-member-5678")
            calls_while_waiting = len(fake.oauth_requests)
            admitted = await join_until_admitted(client, "member-token-1234")
    assert limited["type"] == "error" and "busy" in limited["data"]["message"]
    assert waiting["type"] == "error" and "busy" in waiting["data"]["message"]
    assert calls_while_waiting == 1
    assert admitted[-1]["type"] == "server-join"


@pytest.mark.slow
async def test_viewers_logging_in_with_one_token_at_once_share_one_check(
    fake, monkeypatch, tmp_path
):
    fake.oauth_users = {"member-token-1234": [LOUNGE]}
    fake.oauth_delay = 0.3
    async with discord_dback(fake, monkeypatch, tmp_path, LOGIN_CONFIG) as server:

        async def log_in() -> dict:
            async with Client(server) as client:
                return await client.join(str(LOUNGE), discordToken="member-token-1234")

        answers = await asyncio.gather(*(log_in() for _ in range(5)))
    assert [answer["type"] for answer in answers] == ["server-join"] * 5
    assert fake.requests.count(CHECK) == 1
