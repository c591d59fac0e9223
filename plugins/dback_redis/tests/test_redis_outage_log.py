"""A lost Redis is one WARNING line per change of state in each process's log - lost, back,
the lease lost and taken again - never a traceback, nor a line per call or per retry: real
``dback serve`` processes (an elected one and an edge) on a redis-server of the test's own,
stopped for several seconds and started again."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from private_redis import PrivateRedis

pytestmark = [pytest.mark.redis, pytest.mark.slow]

log = logging.getLogger(__name__)
WAIT = 30.0
OUTAGE = 8.0
AUTO = {
    "DBACK_PLUGINS": "dback-redis,dback-mock",
    "DBACK_MOCK_SEED": "5",
    "DBACK_MOCK_INTERVAL": "0.05",
    "DBACK_REDIS_LEASE_SECONDS": "2",
}
#: Most WARNING or ERROR lines one process may log for one outage: Redis lost (the health
#: change), for the publisher its lease run out, and one to spare for a hook call that
#: failed before the subscription noticed.
MOST_LINES = 3


def complaints(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(r" (WARNING|ERROR|CRITICAL) ", line)]


async def detail_says(process, part: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while part not in await process.redis_detail():
        assert loop.time() < deadline, f"{process.log_path.name} never said {part!r}"
        await asyncio.sleep(0.1)


async def test_a_lost_redis_is_one_line_per_change_of_state(start_dback):
    redis = PrivateRedis()
    await redis.start()
    try:
        elected = await start_dback(redis.url, "auto", **AUTO)
        edge = await start_dback(redis.url, "edge")
        await detail_says(elected, "(publisher)")
        before = {p: len(p.log_path.read_text()) for p in (elected, edge)}
        redis.kill()
        await asyncio.sleep(OUTAGE)
        await redis.start()
        await detail_says(elected, "(publisher)")
        await asyncio.sleep(5.0)  # every loop has found Redis again
        for process in (elected, edge):
            text = process.log_path.read_text()[before[process] :]
            lines = complaints(text)
            log.info("%s after %.0f s without Redis:\n%s", process.log_path.name, OUTAGE, text)
            assert "Traceback" not in text
            assert len(lines) <= MOST_LINES, "\n".join(lines)
            assert text.count("plugin dback-redis is unavailable") == 1, "\n".join(lines)
            assert text.count("plugin dback-redis is serving again") == 1
            assert text.count("answers again") == 1
    finally:
        redis.kill()
