"""Guessing a guild password compared by the core (a ``password`` in a plugin's guild record,
here the mock's) is slow for the guesser only: real ``dback serve``, real WebSocket clients
from distinct loopback addresses, hundreds of connections guessing while a viewer from
another address logs in.

Run with ``DBACK_PASSWORD_LOCKOUT_AFTER=5`` so that each guessing address reaches its
lockout within the test (the defaults are covered in ``test_guessing.py``).
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.password_flood import log_in_timed, served, start_flood

log = logging.getLogger(__name__)

GUILD = "oauth"  # the mock's passworded guild
PASSWORD = "open sesame"
LOCKOUT_AFTER = 5
VIEWER = "127.0.0.9"
SECONDS = 12.0
#: Wrong passwords per second on each guessing connection: under the message rate limit
#: (5/s), so the server has no reason to close it.
RATE = 4.5

pytestmark = pytest.mark.slow


async def guess_while_a_viewer_logs_in(
    url: str, guild: str, password: str, counts: dict[str, int]
) -> tuple[dict[str, dict[str, int]], list[tuple[str, float]]]:
    """The flood from ``counts`` (address -> connections) and, during it, 10 logins of a
    viewer from ``VIEWER`` a second apart: the flood's counts and each login's outcome."""
    attack = await start_flood(url, guild, SECONDS, RATE, counts)
    await asyncio.sleep(1.5)  # every guessing connection open and sending
    logins = []
    for _ in range(10):
        logins.append(await log_in_timed(url, VIEWER, guild, password))
        await asyncio.sleep(0.8)
    return await attack.result(), logins


def check(
    counts: dict[str, dict[str, int]], logins: list[tuple[str, float]], records: list[dict]
) -> None:
    for address, answers in counts.items():
        log.info("guesser %s: %s", address, answers)
        assert answers.get("checked", 0) <= LOCKOUT_AFTER, (address, answers)
        assert answers.get("throttled", 0) > 100, (address, answers)  # it really flooded
        assert set(answers) <= {"checked", "throttled"}, (address, answers)
    log.info("viewer logins in order: %s", [round(seconds, 3) for _, seconds in logins])
    latencies = sorted(seconds for _, seconds in logins)
    log.info("viewer logins: median %.3f s, worst %.3f s", latencies[5], latencies[-1])
    assert [kind for kind, _ in logins] == ["server-join"] * 10
    assert latencies[-1] < 0.5, latencies
    lockouts = [r["message"] for r in records if "locked out" in r["message"]]
    assert sorted(lockouts) == sorted(
        f"password checks from {address} locked out for 600 s after {LOCKOUT_AFTER} wrong passwords"
        for address in counts
    ), lockouts
    warnings = [r["message"] for r in records if r["level"] == "WARNING"]
    assert len(warnings) <= len(counts) + 2, warnings


@pytest.mark.parametrize(
    "counts",
    [{"127.0.0.2": 200}, {"127.0.0.2": 256, "127.0.0.3": 256, "127.0.0.4": 256}],
    ids=["200 from one address", "768 from three"],
)
async def test_guessers_are_held_back_while_another_address_logs_in(counts, tmp_path):
    env = {
        "DBACK_PLUGINS": "dback-mock",
        "DBACK_MOCK_PASSWORD": PASSWORD,
        "DBACK_PASSWORD_LOCKOUT_AFTER": str(LOCKOUT_AFTER),
    }
    async with served(env, tmp_path / "dback.log") as server:
        result, logins = await guess_while_a_viewer_logs_in(server.url, GUILD, PASSWORD, counts)
    check(result, logins, server.records())
