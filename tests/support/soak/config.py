"""What one soak run does: its size, its rates and the faults it may inject."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Every fault the soak knows, in the order the report lists them.
FAULT_KINDS = (
    "pg_terminate",
    "redis_restart",
    "sentinel_failover",
    "publisher_sigterm",
    "publisher_sigkill",
    "publisher_sigstop",
    "worker_sigkill",
    "worker_sigstop",
    "viewer_churn",
)


def parse_faults(text: str) -> tuple[str, ...]:
    """``all``, ``none`` or a comma-separated list of ``FAULT_KINDS``."""
    text = text.strip()
    if text == "all":
        return FAULT_KINDS
    if text in ("", "none"):
        return ()
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [kind for kind in kinds if kind not in FAULT_KINDS]
    if unknown:
        raise ValueError(f"unknown fault kind(s) {unknown}; known: {', '.join(FAULT_KINDS)}")
    return kinds


@dataclass(frozen=True)
class SoakConfig:
    """One run. Times are seconds; rates are per second over the whole deployment."""

    duration: float = 600.0
    nodes: int = 3
    #: One more ``dback serve --workers N`` process beside ``nodes`` (0: none).
    workers: int = 0
    viewers: int = 300
    slow_fraction: float = 0.1
    churn_fraction: float = 0.2
    #: A churning viewer reconnects after a session of this many seconds (uniform).
    churn_session: tuple[float, float] = (10.0, 30.0)
    members: int = 40
    senders: int = 5
    chat_rate: float = 5.0
    status_rate: float = 10.0
    faults: tuple[str, ...] = FAULT_KINDS
    #: Seconds between the end of one fault's recovery and the next fault (uniform).
    fault_gap: tuple[float, float] = (5.0, 15.0)
    sentinels: bool = False
    lease_seconds: float = 2.0
    #: A chat row counts against a session only when written at least ``join_margin`` after
    #: the viewer joined and ``leave_margin`` before its connection ended (see checker).
    join_margin: float = 1.0
    leave_margin: float = 10.0
    #: How long, once the writer stopped, every viewer's world may take to match PostgreSQL.
    settle_timeout: float = 60.0
    seed: int = 1
    #: Extra environment for every ``dback serve`` (e.g. a branch's new settings).
    node_env: dict[str, str] = field(default_factory=dict)
