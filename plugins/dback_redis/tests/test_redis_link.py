"""What hours without Redis leave in the log: one line when it goes, one per new reason, a
reminder every ten minutes, one when it is back - and the health the core is told. A clock
the test moves stands in for the hours."""

from __future__ import annotations

import logging

from redis.exceptions import ConnectionError as RedisConnectionError

from dback_core.plugin.health import SERVING, UNAVAILABLE
from dback_redis.link import REMIND_EVERY, Link

WHERE = "redis://127.0.0.1:6379/0"


class Host:
    """Records what the link reports."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, str | None]] = []

    def report_health(self, status: str, reason: str | None = None) -> None:
        self.reports.append((status, reason))


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]


def test_a_redis_never_reached_is_unreachable_then_lost_only_after_a_subscription(caplog):
    caplog.set_level(logging.DEBUG, logger="dback_redis")
    clock, host = Clock(), Host()
    link = Link(WHERE, clock)
    link.host = host
    refused = RedisConnectionError("Error 111 connecting")
    for _ in range(3600):  # an attempt every second for an hour
        link.failed(refused)
        clock.now += 1
    assert logged(caplog) == [
        f"redis {WHERE} unreachable (Error 111 connecting); serving without it and retrying",
        *(
            f"redis {WHERE} still unreachable after {minutes} min (Error 111 connecting)"
            for minutes in range(int(REMIND_EVERY // 60), 60, int(REMIND_EVERY // 60))
        ),
    ]
    assert set(host.reports) == {
        (UNAVAILABLE, f"cannot reach Redis at {WHERE}: Error 111 connecting")
    }

    caplog.clear()
    link.failed(RedisConnectionError("Authentication required."))
    link.up()
    link.failed(refused)
    assert logged(caplog) == [
        f"redis {WHERE} still unreachable, now: Authentication required.",
        f"redis {WHERE} answers again after 3600.0s",
        f"redis {WHERE} subscription lost (Error 111 connecting); retrying",
    ]
    assert host.reports[-2:] == [
        (SERVING, None),
        (UNAVAILABLE, f"cannot reach Redis at {WHERE}: Error 111 connecting"),
    ]
