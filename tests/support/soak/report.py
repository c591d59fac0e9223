"""The one table a soak prints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from tests.support.soak.checker import ChatVerdict
from tests.support.soak.config import FAULT_KINDS
from tests.support.soak.faults import Fault


@dataclass
class SoakResult:
    duration: float
    nodes: str
    viewers: int
    viewer_kinds: str
    chat_written: int
    statuses_written: int
    writer_errors: int
    faults: list[Fault]
    chat: ChatVerdict
    world_mismatches: int
    worlds_checked: int
    presence_regressions: int
    worst_dark: float
    worst_dark_at: float
    worst_dark_where: str
    rss_drift_kib: int
    fds_before: int
    fds_after: int
    rss_drift_of: str

    @property
    def clean(self) -> bool:
        """What the short test asserts: nothing wrong that a viewer could see."""
        return not (
            self.world_mismatches
            or self.chat.lost
            or self.chat.duplicated
            or self.chat.reordered
            or self.chat.foreign
            or self.presence_regressions
        )


def table(result: SoakResult) -> str:
    counts = Counter(fault.kind for fault in result.faults)
    skipped = Counter(fault.kind for fault in result.faults if "skipped" in fault.detail)
    unrecovered = sum(1 for fault in result.faults if fault.recovered_after is None)
    recoveries = [f.recovered_after for f in result.faults if f.recovered_after is not None]
    injected = ", ".join(
        f"{kind} {counts[kind]}" + (f" ({skipped[kind]} skipped)" if skipped[kind] else "")
        for kind in FAULT_KINDS
        if counts[kind]
    )
    rows = [
        ("run", f"{result.duration:.0f} s, {result.nodes}"),
        (
            "writer",
            f"{result.chat_written} chat, {result.statuses_written} status changes, "
            f"{result.writer_errors} write errors",
        ),
        ("faults injected", f"{len(result.faults)}: {injected or 'none'}"),
        (
            "ready again after",
            f"worst {max(recoveries, default=0):.1f} s, {unrecovered} not within 60 s",
        ),
        (
            "viewers checked",
            f"{result.viewers} ({result.viewer_kinds}), {result.chat.sessions} sessions",
        ),
        ("world mismatches", f"{result.world_mismatches} of {result.worlds_checked} viewers"),
        ("chat owed to sessions", str(result.chat.owed)),
        ("chat lost", str(result.chat.lost)),
        ("chat duplicated", str(result.chat.duplicated)),
        ("chat reordered", str(result.chat.reordered)),
        ("chat not written", str(result.chat.foreign)),
        ("stale presences", str(result.presence_regressions)),
        ("sessions with chat errors", str(result.chat.sessions_with_errors)),
        (
            "worst dark time",
            f"{result.worst_dark:.1f} s (from t={result.worst_dark_at:.0f} s, "
            f"{result.worst_dark_where or 'until the end'})",
        ),
        ("memory drift", f"{result.rss_drift_kib / 1024:+.1f} MiB ({result.rss_drift_of})"),
        (
            "open fd drift",
            f"{result.fds_after - result.fds_before:+d} (all processes: "
            f"{result.fds_before} -> {result.fds_after}, every viewer connected)",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'soak':<{width}} | result |", f"|{'-' * (width + 2)}|--------|"]
    lines += [f"| {name:<{width}} | {value} |" for name, value in rows]
    return "\n".join(lines)


def fault_log(result: SoakResult, started: float) -> str:
    """One line per fault: when (seconds into the run), what, and the recovery."""
    return "\n".join(
        f"t={fault.at - started:6.1f} s  {fault.kind:<18} {fault.detail}; ready again "
        + ("never" if fault.recovered_after is None else f"after {fault.recovered_after:.1f} s")
        for fault in result.faults
    )
