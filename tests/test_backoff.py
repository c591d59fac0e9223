"""``Backoff``: the delays every retry loop in dback and its plugins waits."""

from __future__ import annotations

import asyncio

import pytest

from dback_core import Backoff


def test_delays_grow_by_the_factor_up_to_the_ceiling():
    backoff = Backoff(0.5, 5.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.failures == 6
    tripled = Backoff(1.0, 10.0, factor=3.0)
    assert [tripled.next() for _ in range(4)] == [1.0, 3.0, 9.0, 10.0]


def test_a_success_starts_over():
    backoff = Backoff(1.0, 60.0)
    backoff.next(), backoff.next(), backoff.next()
    assert backoff.upcoming == 8.0
    backoff.reset()
    assert (backoff.upcoming, backoff.failures) == (1.0, 0)
    assert backoff.next() == 1.0


def test_an_attempt_that_lasted_reset_after_counts_as_a_success():
    now = [0.0]
    backoff = Backoff(1.0, 60.0, reset_after=30.0, clock=lambda: now[0])
    for _ in range(4):
        backoff.attempt()
        now[0] += 1.0  # fails quickly: the delays grow
        backoff.next()
    assert backoff.upcoming == 16.0
    backoff.attempt()
    now[0] += 45.0  # ran a long while before it failed
    assert backoff.next() == 1.0
    backoff.attempt()
    now[0] += 1.0
    assert backoff.next() == 2.0


def test_jitter_takes_up_to_its_fraction_off_each_delay():
    fractions = iter([0.0, 1.0, 0.5])
    backoff = Backoff(4.0, 100.0, jitter=0.25, random_fraction=lambda: next(fractions))
    assert [backoff.next() for _ in range(3)] == [4.0, 6.0, 14.0]


@pytest.mark.parametrize(
    "arguments",
    [
        {"first": -1.0, "ceiling": 1.0},
        {"first": 2.0, "ceiling": 1.0},
        {"first": 1.0, "ceiling": 2.0, "factor": 0.5},
        {"first": 1.0, "ceiling": 2.0, "jitter": 1.5},
    ],
)
def test_nonsense_is_refused(arguments):
    with pytest.raises(ValueError):
        Backoff(**arguments)


async def test_sleep_waits_the_next_delay():
    backoff = Backoff(0.01, 0.02)
    assert await backoff.sleep() is False
    assert await backoff.sleep(asyncio.Event()) is False
    assert backoff.upcoming == 0.02 and backoff.failures == 2


async def test_sleep_ends_early_when_told_to_stop():
    backoff = Backoff(3600.0, 3600.0)
    stop = asyncio.Event()
    sleeper = asyncio.create_task(backoff.sleep(stop))
    await asyncio.sleep(0)
    assert not sleeper.done()
    stop.set()
    assert await asyncio.wait_for(sleeper, 5) is True
    assert await backoff.sleep(stop) is True  # already stopping: no wait at all
