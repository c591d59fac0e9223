"""One soak run from start to table: the deployment, the viewers, the writer, the faults,
a quiet end in which every world must converge, then the checker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from pathlib import Path

from tests.support.soak.checker import ChatVerdict, judge_session, world_differences
from tests.support.soak.cluster import Cluster
from tests.support.soak.config import SoakConfig
from tests.support.soak.faults import FaultInjector
from tests.support.soak.report import SoakResult
from tests.support.soak.resources import ResourceLog, sample_forever, total_fds
from tests.support.soak.viewers import Timeline, Viewer
from tests.support.soak.writer import Writer

log = logging.getLogger(__name__)


def _viewers(config: SoakConfig, cluster: Cluster, timeline: Timeline) -> list[Viewer]:
    rng = random.Random(config.seed)
    urls = [(node.name, node.url) for node in cluster.nodes]
    slow = round(config.viewers * config.slow_fraction)
    churn = round(config.viewers * config.churn_fraction)
    viewers = []
    for index in range(config.viewers):
        kind = "slow" if index < slow else "churn" if index < slow + churn else "steady"
        viewers.append(
            Viewer(index, urls, kind, random.Random(rng.random()), timeline, config.churn_session)
        )
    return viewers


async def _all_connected(viewers: list[Viewer], timeout: float) -> None:
    await asyncio.wait_for(asyncio.gather(*(v.connected.wait() for v in viewers)), timeout)


async def _settle(
    cluster: Cluster, viewers: list[Viewer], timeout: float
) -> tuple[dict[str, tuple[str, str]], dict[int, list[str]]]:
    """Wait until every viewer's world matches PostgreSQL, or ``timeout``; the truth and the
    viewers that still differ."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        truth = await cluster.database.world()
        different = {v.index: diff for v in viewers if (diff := world_differences(v.world, truth))}
        if not different or loop.time() > deadline:
            return truth, different
        await asyncio.sleep(1.0)


async def run(config: SoakConfig, directory: Path) -> tuple[SoakResult, str]:
    """The result and the fault log (one line per fault)."""
    from tests.support.soak.report import fault_log

    directory.mkdir(parents=True, exist_ok=True)
    timeline = Timeline()
    resources = ResourceLog()
    async with Cluster(config, directory) as cluster:
        sampler = asyncio.create_task(sample_forever(cluster, resources))
        viewers = _viewers(config, cluster, timeline)
        writer = Writer(
            cluster.database.dsn,
            config.members,
            config.senders,
            config.chat_rate,
            config.status_rate,
        )
        injector = FaultInjector(
            cluster,
            viewers,
            config.faults,
            config.fault_gap,
            lambda: [writer.backend_pid],
            random.Random(config.seed + 1),
        )
        try:
            for viewer in viewers:
                viewer.start()
                await asyncio.sleep(0.01)  # no thundering herd at the start
            await _all_connected(viewers, 120)
            log.info("%d viewers connected; writing", len(viewers))
            fds_before = total_fds(cluster)
            await writer.start()
            timeline.writer_started = time.monotonic()
            await injector.run(until=timeline.writer_started + config.duration)
            remaining = timeline.writer_started + config.duration - time.monotonic()
            await asyncio.sleep(max(0.0, remaining))
            await writer.stop()
            timeline.writer_stopped = time.monotonic()
            for viewer in viewers:
                viewer.churn_session = (1e9, 1e9)  # the quiet end: nobody leaves on purpose
            await cluster.until_ready(timeout=60)
            await _all_connected(viewers, 120)
            truth, different = await _settle(cluster, viewers, config.settle_timeout)
            await asyncio.sleep(config.leave_margin / 2)  # late chat still counts
            await _all_connected(viewers, 120)
            fds_after = total_fds(cluster)
        finally:
            await asyncio.gather(*(viewer.stop() for viewer in viewers))
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            with contextlib.suppress(Exception):
                await writer.stop()
        nodes_text = (
            f"{config.nodes} processes"
            + (f" + 1 with --workers {config.workers}" if config.workers else "")
            + (", Redis with 3 sentinels" if config.sentinels else ", one Redis")
        )
    chat = ChatVerdict()
    sessions = [session for viewer in viewers for session in viewer.sessions]
    for viewer in viewers:
        for number, session in enumerate(viewer.sessions):
            chat.add(
                judge_session(
                    session,
                    writer.log.chat,
                    writer.log.uncertain,
                    config.join_margin,
                    config.leave_margin,
                    f"viewer {viewer.index} ({viewer.kind}) session {number}",
                    timeline.writer_started,
                    sessions,
                )
            )
    # A slow reader's own stalls are not dark time: judge the others.
    worst = max((v for v in viewers if v.kind != "slow"), key=lambda v: v.worst_dark)
    resources.write_csv(directory / "resources.csv", timeline.writer_started)
    rss, of = resources.drift(min_span=config.duration / 2)
    kinds = {k: sum(1 for v in viewers if v.kind == k) for k in ("steady", "slow", "churn")}
    result = SoakResult(
        duration=config.duration,
        nodes=nodes_text,
        viewers=len(viewers),
        viewer_kinds=", ".join(f"{n} {k}" for k, n in kinds.items()),
        chat_written=len(writer.log.chat),
        statuses_written=writer.log.statuses,
        writer_errors=writer.log.errors,
        faults=injector.injected,
        chat=chat,
        world_mismatches=len(different),
        worlds_checked=len(viewers),
        presence_regressions=sum(s.presence_regressions for v in viewers for s in v.sessions),
        worst_dark=worst.worst_dark,
        worst_dark_at=worst.worst_dark_at - timeline.writer_started,
        worst_dark_where=worst.worst_dark_where,
        rss_drift_kib=rss,
        fds_before=fds_before,
        fds_after=fds_after,
        rss_drift_of=of,
    )
    _ = truth
    return result, fault_log(result, timeline.writer_started)
