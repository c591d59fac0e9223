"""How long a presence change takes from the Discord gateway to a d-zone viewer.

The number is measured and reported (logged at INFO, shown with ``--log-cli-level=INFO``;
``record_property`` keeps it in JUnit XML); the test asserts only that every change arrives,
in order.
"""

from __future__ import annotations

import logging
import statistics
import time

from discord_world import BOB, LOUNGE, discord_dback

from dback_core.testing import Client

CHANGES = 200

log = logging.getLogger(__name__)


async def test_presence_to_viewer_latency(fake, monkeypatch, tmp_path, record_property):
    latencies = []
    statuses = []
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            for index in range(CHANGES):
                status = ("online", "dnd")[index % 2]
                started = time.perf_counter()
                await fake.set_status(LOUNGE, BOB, status)
                frame = await client.recv_type("presence")
                latencies.append(time.perf_counter() - started)
                statuses.append((frame["data"]["uid"], frame["data"]["status"]))
    assert statuses == [(str(BOB), ("online", "dnd")[index % 2]) for index in range(CHANGES)]
    median_ms = statistics.median(latencies) * 1000
    p95_ms = statistics.quantiles(latencies, n=20)[-1] * 1000
    record_property("presence_latency_median_ms", round(median_ms, 3))
    record_property("presence_latency_p95_ms", round(p95_ms, 3))
    log.info(
        "presence -> viewer, %d changes: median %.2f ms, p95 %.2f ms", CHANGES, median_ms, p95_ms
    )
