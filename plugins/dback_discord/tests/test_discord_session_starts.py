"""The bot's daily session starts are never used up: an op 9 storm is met with doubling
delays, and identifying stops at the reserve with the reset time in the plugin's health."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from discord_world import ALICE, LOUNGE, discord_dback
from test_discord_health import health, wait_for_status

from dback_core.plugin.health import FAILED, SERVING
from dback_core.testing import Client

#: Re-identify after 0.05 s, doubling to 0.4 s; a session up 0.3 s is stable.
STORMY = (
    "[bot]\nguild_ready_timeout = 0.05\nreidentify_delay = 0.05\nreidentify_max = 0.4\n"
    "stable_session = 0.3\n"
)


async def wait_until(condition, timeout: float = 20.0) -> None:
    async def reached() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(reached(), timeout)


def logged_delays(caplog) -> list[tuple[int, float]]:
    """(streak, delay) of every 'starts a new session' line, in order."""
    found = []
    for record in caplog.records:
        match = re.search(r"\((\d+) in a row .*identifying in ([\d.]+)s", record.getMessage())
        if match:
            found.append((int(match[1]), float(match[2])))
    return found


@pytest.mark.slow
async def test_an_op9_storm_doubles_the_wait_to_a_ceiling_and_a_stable_session_resets_it(
    fake, monkeypatch, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="dback_discord")
    async with discord_dback(fake, monkeypatch, tmp_path, prelude=STORMY) as server:
        await wait_for_status(server, SERVING)
        fake.invalid_session_storm = 5
        await fake.invalidate_sessions()
        await wait_until(lambda: fake.identifies == 2)  # five op 9s, then a session
        await wait_for_status(server, SERVING)
        async with Client(server) as client:
            join = await client.join(str(LOUNGE))
        storm = logged_delays(caplog)
        await asyncio.sleep(0.5)  # longer than stable_session
        await fake.invalidate_sessions()
        await wait_until(lambda: fake.identifies == 3)
        after_stable = logged_delays(caplog)[len(storm) :]
    times = [when for when, _, _ in fake.identify_log]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times[1:7])]
    assert storm == [(1, 0.05), (2, 0.1), (3, 0.2), (4, 0.4), (5, 0.4), (6, 0.4)]
    # What the fake saw: each new IDENTIFY waited at least the logged delay (never less).
    for gap, (_, delay) in zip(gaps, storm[1:], strict=True):
        assert gap >= delay * 0.9
    assert len(fake.identify_log) == 8
    assert after_stable == [(1, 0.05)]
    assert join["data"]["users"][str(ALICE)]["status"] == "online"


@pytest.mark.slow
async def test_identifying_stops_at_the_reserve_and_reports_the_reset_time(
    fake, monkeypatch, tmp_path
):
    fake.session_starts_remaining = 5
    fake.session_reset_after_ms = 3_600_000
    config = "session_reserve = 3\n"
    async with discord_dback(fake, monkeypatch, tmp_path, config, prelude=STORMY) as server:
        await wait_for_status(server, SERVING)
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            fake.invalid_session_storm = 1000
            await fake.invalidate_sessions()
            await wait_for_status(server, FAILED)
            withdrawn = (await client.recv_type("server-list", timeout=10))["data"]
        reason = health(server).reason
        identified = len(fake.identify_log)
        await asyncio.sleep(1.0)  # far longer than the delays: no further IDENTIFY
        later = len(fake.identify_log)
    assert (identified, later) == (2, 2)
    assert fake.session_starts_remaining == 3
    assert withdrawn == {}
    assert "session_reserve" in reason and "3 in reserve" in reason
    stamp = re.search(r"at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", reason)
    assert stamp is not None
    reset_at = datetime.strptime(stamp[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert abs(reset_at - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(minutes=2)


@pytest.mark.slow
async def test_a_budget_already_at_its_reserve_never_identifies_and_starts_after_the_reset(
    fake, monkeypatch, tmp_path
):
    fake.session_starts_remaining = 3
    fake.session_reset_after_ms = 1500
    config = "session_reserve = 3\n"
    async with discord_dback(fake, monkeypatch, tmp_path, config, prelude=STORMY) as server:
        await wait_for_status(server, FAILED)
        reason = health(server).reason
        untouched = (len(fake.identify_log), fake.session_starts_remaining)
        fake.session_starts_remaining = 1000  # Discord's daily reset
        await wait_for_status(server, SERVING, timeout=20)
        async with Client(server) as client:
            join = await client.join(str(LOUNGE))
    assert untouched == (0, 3)
    assert "only 3 of the bot's 1000 daily session starts are left" in reason
    assert join["data"]["users"][str(ALICE)]["status"] == "online"
