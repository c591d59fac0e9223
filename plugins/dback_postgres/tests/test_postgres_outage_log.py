"""What an outage hours long leaves in the log: a line per change and a reminder every ten
minutes, never a line per attempt; asyncpg's tracebacks as one line. A clock the test moves
stands in for the hours."""

from __future__ import annotations

import logging
import sys

import asyncpg

from dback_core.plugin.health import FAILED, SERVING, UNAVAILABLE
from dback_postgres.diagnosis import Trouble
from dback_postgres.library_logs import OneLine
from dback_postgres.outage import REMIND_EVERY, Outage

WHERE = "postgresql://dback@127.0.0.1:5432/dback"
DOWN = Trouble(UNAVAILABLE, f"cannot reach PostgreSQL at {WHERE}: refused", "refused")
WRONG = Trouble(FAILED, f"PostgreSQL at {WHERE} refused: password ...; check it", "Invalid")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def messages(caplog, level: int = logging.INFO) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= level]


def test_an_hour_of_retries_logs_each_change_and_a_reminder_every_ten_minutes(caplog):
    caplog.set_level(logging.DEBUG, logger="dback_postgres")
    clock, reports = Clock(), []
    outage = Outage(WHERE, lambda status, reason: reports.append(status), clock)
    for _ in range(3600):  # one attempt a second for an hour
        outage.trouble(DOWN, 1.0)
        clock.now += 1
    logged = messages(caplog)
    assert logged[0] == (
        f"PostgreSQL at {WHERE} is unavailable (refused); reconnecting, next attempt in 1.0s"
    )
    assert len(logged) == 6, logged  # the start, and reminders at 10, 20, 30, 40, 50 min
    assert logged[1] == f"PostgreSQL at {WHERE}: still unavailable after 10m00s ({DOWN.reason})"
    assert logged[-1] == f"PostgreSQL at {WHERE}: still unavailable after 50m00s ({DOWN.reason})"
    assert set(reports) == {UNAVAILABLE}

    caplog.clear()
    outage.trouble(WRONG, 60.0)
    outage.trouble(WRONG, 60.0)
    assert messages(caplog) == [f"{WRONG.reason}; checking again in 60.0s"]
    assert caplog.records[0].levelno == logging.ERROR

    caplog.clear()
    clock.now += 30
    outage.over()
    assert messages(caplog) == [f"PostgreSQL at {WHERE} answers again after 1h00m"]
    assert reports[-1] == SERVING and reports[-2] == FAILED


def test_a_lost_connection_is_logged_but_not_reported_until_reconnecting_fails(caplog):
    reports = []
    outage = Outage(WHERE, lambda status, reason: reports.append(status), Clock())
    outage.trouble(DOWN, 0.1, report=False)
    assert reports == [] and len(caplog.records) == 1
    outage.trouble(WRONG, 1.0, report=False)  # what needs the operator is always reported
    assert reports == [FAILED]


def record_with(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except type(error):
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "asyncpg.pool",
        logging.WARNING,
        __file__,
        1,
        "Failed to restore; %s",
        ("retrying",),
        exc_info,
    )


def test_asyncpg_tracebacks_become_one_line_repeated_every_ten_minutes_at_most():
    clock = Clock()
    one_line = OneLine(clock=clock)
    refused = ConnectionRefusedError(111, "Connect call failed")
    first = record_with(refused)
    assert one_line.filter(first)
    assert first.exc_info is None
    assert first.getMessage() == (
        "Failed to restore; retrying: ConnectionRefusedError: [Errno 111] Connect call failed"
    )
    clock.now += REMIND_EVERY - 1
    assert not one_line.filter(record_with(refused))
    other = record_with(asyncpg.InvalidPasswordError("password authentication failed"))
    assert one_line.filter(other), "another error is news"
    clock.now += 1
    assert one_line.filter(record_with(refused))
    plain = logging.LogRecord("asyncpg.pool", logging.WARNING, __file__, 1, "slow close", (), None)
    assert one_line.filter(plain) and one_line.filter(plain), "lines without traceback pass"
