"""RSS and open file descriptors of every dback process over time, read from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.soak.cluster import Cluster


def rss_kib(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def open_fds(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        return len(list(Path(f"/proc/{pid}/fd").iterdir()))
    return None


@dataclass
class Sample:
    at: float
    rss_kib: int
    fds: int


@dataclass
class ResourceLog:
    #: "<node> pid <pid>" -> its samples in time order.
    series: dict[str, list[Sample]] = field(default_factory=dict)

    def write_csv(self, path: Path, started: float) -> None:
        """Every sample, for a plot: process, seconds into the run, RSS in KiB, open fds."""
        lines = ["process,seconds,rss_kib,fds"]
        for name, samples in self.series.items():
            lines += [f"{name},{s.at - started:.1f},{s.rss_kib},{s.fds}" for s in samples]
        path.write_text("\n".join(lines) + "\n")

    def drift(self, min_span: float) -> tuple[int, str]:
        """Largest RSS growth (KiB) of any process observed for at least ``min_span``
        seconds, from its first sample after warm-up (a quarter of its span) to its last,
        and which process that is."""
        worst_rss, which = 0, "none observed long enough"
        for name, samples in self.series.items():
            if len(samples) < 2 or samples[-1].at - samples[0].at < min_span:
                continue
            warm = samples[0].at + (samples[-1].at - samples[0].at) / 4
            base = next(s for s in samples if s.at >= warm)
            rss = samples[-1].rss_kib - base.rss_kib
            if which.startswith("none") or rss > worst_rss:
                worst_rss, which = rss, name
        return worst_rss, which


def total_fds(cluster: Cluster) -> int:
    """Open fds of every dback process now. Taken while every viewer is connected, two
    totals differ by what the processes leaked, wherever the viewers landed (each viewer's
    socket is one fd, on whichever process it is)."""
    return sum(open_fds(pid) or 0 for node in cluster.nodes for pid in node.all_pids())


async def sample_forever(cluster: Cluster, log: ResourceLog, interval: float = 2.0) -> None:
    while True:
        now = time.monotonic()
        for node in cluster.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            pids = node.all_pids()
            for pid in pids:
                role = "parent" if node.workers and pid == node.pid else "pid"
                rss, fds = rss_kib(pid), open_fds(pid)
                if rss is not None and fds is not None:
                    log.series.setdefault(f"{node.name} {role} {pid}", []).append(
                        Sample(now, rss, fds)
                    )
        await asyncio.sleep(interval)
