"""The guessing throttle's rules with its default numbers, on a clock the test moves: free
tries, doubling delays, the lockout logged once, nothing shared between addresses."""

from __future__ import annotations

import logging

import pytest

from dback_core.serving.guessing import LOCKOUT, LOCKOUT_AFTER, UNDER_WAY, Guess, GuessThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def throttle(clock: Clock) -> GuessThrottle:
    return GuessThrottle(LOCKOUT_AFTER, LOCKOUT, clock=clock)


def fail(throttle: GuessThrottle, address: str = "203.0.113.5", guild: str = "g") -> None:
    guess = throttle.begin(address, guild)
    assert isinstance(guess, Guess), guess
    guess.failed()


def wait_of(refusal: Guess | str) -> int:
    assert isinstance(refusal, str) and refusal.startswith("Too many wrong passwords"), refusal
    return int(refusal.split("try again in ")[1].split(" s")[0])


def test_three_free_tries_then_delays_that_double(throttle, clock):
    for _ in range(3):
        fail(throttle)
    delays = []
    for _ in range(4):
        delays.append(wait_of(throttle.begin("203.0.113.5", "g")))
        clock.now += delays[-1]
        fail(throttle)
    assert delays == [1, 2, 4, 8]


def test_after_eight_wrong_passwords_the_address_is_locked_out_once_logged(throttle, clock, caplog):
    caplog.set_level(logging.WARNING)
    for guild in ["a", "b", "c", "d"]:  # two failures on each of four guilds: no pair delay
        fail(throttle, guild=guild)
        fail(throttle, guild=guild)
    assert wait_of(throttle.begin("203.0.113.5", "e")) == LOCKOUT
    clock.now += LOCKOUT - 1
    assert wait_of(throttle.begin("203.0.113.5", "e")) == 1
    assert [record.getMessage() for record in caplog.records] == [
        "password checks from 203.0.113.5 locked out for 600 s after 8 wrong passwords"
    ]
    clock.now += 1
    fail(throttle, guild="e")  # one try after the lockout; wrong again: locked out again
    assert wait_of(throttle.begin("203.0.113.5", "f")) == LOCKOUT
    assert len(caplog.records) == 2 and throttle.lockouts == 2


def test_another_address_is_never_slowed(throttle):
    for guild in "abcdefgh":
        fail(throttle, guild=guild)
    assert isinstance(throttle.begin("203.0.113.5", "a"), str)
    for other in ["203.0.113.6", "2001:db8:1:3::/64"]:
        assert isinstance(throttle.begin(other, "a"), Guess)


def test_checks_under_way_count_as_failures_until_they_end(throttle):
    """200 connections sending at once get the three free tries, not 200 checks."""
    answers = [throttle.begin("203.0.113.5", "g") for _ in range(200)]
    guesses = [answer for answer in answers if isinstance(answer, Guess)]
    assert len(guesses) == 3
    assert set(answers[3:]) == {UNDER_WAY}
    for guess in guesses:
        guess.failed()
    assert wait_of(throttle.begin("203.0.113.5", "g")) == 1


def test_a_right_password_forgives_that_guild_s_typos_only(throttle):
    fail(throttle, guild="typo")
    fail(throttle, guild="typo")
    right = throttle.begin("203.0.113.5", "typo")
    assert isinstance(right, Guess)
    right.succeeded()
    for guild in "abc":
        fail(throttle, guild=guild)
        fail(throttle, guild=guild)
    fail(throttle, guild="d")
    # 7 failures count (the two typos are forgiven): one more try is allowed
    assert isinstance(throttle.begin("203.0.113.5", "d"), Guess)


def test_an_abandoned_check_counts_nothing(throttle):
    for _ in range(10):
        guess = throttle.begin("203.0.113.5", "g")
        assert isinstance(guess, Guess)
        guess.abandoned()
        guess.failed()  # ended already: ignored
    assert isinstance(throttle.begin("203.0.113.5", "g"), Guess)


def test_failures_are_forgotten_after_an_hour_and_memory_is_bounded(clock):
    throttle = GuessThrottle(LOCKOUT_AFTER, LOCKOUT, clock=clock, remembered=100)
    for guild in "abcdefgh":
        fail(throttle, guild=guild)
    clock.now += 3600
    assert isinstance(throttle.begin("203.0.113.5", "a"), Guess)
    for number in range(1000):
        fail(throttle, address=f"198.51.{number // 256}.{number % 256}")
    assert len(throttle.addresses) <= 100 and len(throttle.pairs) <= 100
