"""The short chaos soak (about a minute): three ``dback serve`` processes and one with
``--workers 2`` on a PostgreSQL database of their own through a private Redis, 60 viewers
(slow and churning ones among them), a writer at known rates and faults at random. Every
viewer's world must end equal to PostgreSQL and no chat may be lost, duplicated or
reordered. ``make soak`` runs the long form; docs/soak.md explains the table.

Every fault kind is injected, a Redis restarted empty included; ``SOAK_FAULTS`` (``all``,
``none`` or kinds joined by commas, see ``tests.support.soak.config.FAULT_KINDS``) chooses
others, and ``SOAK_SENTINELS=1`` runs Redis as a master, a replica and three sentinels.
"""

from __future__ import annotations

import logging
import os

import pytest

from tests.support.soak.config import SoakConfig, parse_faults
from tests.support.soak.report import table
from tests.support.soak.run import run

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

log = logging.getLogger(__name__)


async def test_a_short_soak_loses_nothing(tmp_path):
    config = SoakConfig(
        duration=60.0,
        nodes=3,
        workers=2,
        viewers=60,
        faults=parse_faults(os.environ.get("SOAK_FAULTS", "all")),
        fault_gap=(4.0, 8.0),
        sentinels=os.environ.get("SOAK_SENTINELS", "") == "1",
        settle_timeout=60.0,
    )
    result, faults = await run(config, tmp_path)
    report = f"{faults}\n{table(result)}\n" + "\n".join(result.chat.examples)
    log.info("short soak:\n%s", report)
    assert result.faults or not config.faults, report
    assert result.chat.owed > 0, report
    assert result.clean, report
