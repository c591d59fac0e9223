"""Password guessing made slow for the guesser only.

Every password check a client asks for is decided here first, before any hashing or
comparing is done: failures back off per (address, guild) - a few tries free, then a delay
that doubles with each further failure - and per address - after ``lockout_after`` failures
(over all guilds, until forgotten) the address is locked out of password checks for
``lockout`` seconds, logged once. A try during a delay or a lockout is refused at once,
saying when to try again; it costs no check and changes nothing.

Checks still under way count as failures until they end, so a guesser with hundreds of
connections sending at once gets no more checks than one sending them one by one: only the
free tries can run side by side. All state is per address (an IPv4 address or an IPv6 /64,
``dback_core.wire.addresses``), so an address with no failures is never slowed or locked out by
another's, and a guesser cannot lock a guild for anybody but itself. A correct password
forgets that (address, guild)'s failures, so a user's typos do not add up to a lockout; it
does not forgive failures on other guilds.

The state is bounded: at most ``remembered`` addresses and as many (address, guild) pairs,
the least recently touched forgotten first, and failures are forgotten ``forget`` seconds
after the last one.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

#: Wrong passwords (over all guilds) after which an address is locked out, and for how long
#: (``DBACK_PASSWORD_LOCKOUT_AFTER``, ``DBACK_PASSWORD_LOCKOUT``).
LOCKOUT_AFTER = 8
LOCKOUT = 600.0
#: Failed tries per (address, guild) before any delay.
FREE_TRIES = 3
#: The first delay after the free tries, doubled by each further failure up to ``MAX_DELAY``.
FIRST_DELAY = 1.0
MAX_DELAY = 60.0
#: Seconds after its last failure an address (or pair) starts afresh.
FORGET = 3600.0
#: Addresses, and (address, guild) pairs, remembered at most.
REMEMBERED = 65536

WAIT = "Too many wrong passwords from your address; try again in {seconds} s."
UNDER_WAY = "A password check from your address is under way; try again in a moment."


@dataclass(slots=True)
class _Failures:
    """Failures of one address, or of one (address, guild) pair."""

    failures: int = 0
    #: Checks started and not yet ended.
    checking: int = 0
    #: No check before this moment (a pair's delay, an address's lockout).
    not_before: float = 0.0
    last_failure: float = 0.0


_Key = TypeVar("_Key")


class _Table(OrderedDict[_Key, _Failures]):
    """Records by key, least recently touched first, at most ``size`` of them."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def touch(self, key: _Key, now: float, forget: float) -> _Failures:
        record = self.get(key)
        if record is None or (
            record.checking == 0
            and now >= record.not_before
            and now - record.last_failure >= forget
        ):
            record = self[key] = _Failures()
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return record


class Guess:
    """One password check allowed by ``GuessThrottle.begin``: end it with exactly one of
    ``succeeded``, ``failed`` or ``abandoned`` (no check was made after all)."""

    __slots__ = ("_address", "_ended", "_pair", "_throttle", "address")

    def __init__(
        self, throttle: GuessThrottle, address: str, by_address: _Failures, pair: _Failures
    ) -> None:
        self._throttle = throttle
        self.address = address
        self._address = by_address
        self._pair = pair
        self._ended = False

    def succeeded(self) -> None:
        """The password was right: this guild's failures from the address are forgiven."""
        if self._end():
            self._address.failures = max(0, self._address.failures - self._pair.failures)
            self._pair.failures = 0
            self._pair.not_before = 0.0

    def failed(self) -> None:
        """The password was wrong: the next try waits, or the address is locked out."""
        if self._end():
            self._throttle.record_failure(self.address, self._address, self._pair)

    def abandoned(self) -> None:
        """No check was made (refused for another reason, cancelled): nothing counts."""
        self._end()

    def _end(self) -> bool:
        if self._ended:
            return False
        self._ended = True
        self._address.checking -= 1
        self._pair.checking -= 1
        return True


class GuessThrottle:
    """Decides, before any work, whether a password check from an address may run now."""

    def __init__(
        self,
        lockout_after: int,
        lockout: float,
        *,
        free_tries: int = FREE_TRIES,
        first_delay: float = FIRST_DELAY,
        max_delay: float = MAX_DELAY,
        forget: float = FORGET,
        remembered: int = REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lockout_after = max(1, lockout_after)
        self.lockout = lockout
        self.free_tries = max(1, free_tries)
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.forget = forget
        self.clock = clock
        self.addresses: _Table[str] = _Table(remembered)
        self.pairs: _Table[tuple[str, str]] = _Table(remembered)
        #: Lockouts begun since the start (each logged once).
        self.lockouts = 0

    def begin(self, address: str, guild: str) -> Guess | str:
        """A ``Guess`` to make the check under, or the refusal to show the client."""
        now = self.clock()
        by_address = self.addresses.touch(address, now, self.forget)
        pair = self.pairs.touch((address, guild), now, self.forget)
        wait = max(by_address.not_before, pair.not_before) - now
        if wait > 0:
            return WAIT.format(seconds=math.ceil(wait))
        # Checks under way may all fail: only as many may run as failures are still free.
        if (
            by_address.checking and by_address.failures + by_address.checking >= self.lockout_after
        ) or (pair.checking and pair.failures + pair.checking >= self.free_tries):
            return UNDER_WAY
        by_address.checking += 1
        pair.checking += 1
        return Guess(self, address, by_address, pair)

    def record_failure(self, address: str, by_address: _Failures, pair: _Failures) -> None:
        now = self.clock()
        for record in (by_address, pair):
            record.failures += 1
            record.last_failure = now
        beyond = pair.failures - self.free_tries
        if beyond >= 0:
            delay = min(self.first_delay * 2**beyond, self.max_delay)
            pair.not_before = max(pair.not_before, now + delay)
        if by_address.failures >= self.lockout_after and now >= by_address.not_before:
            by_address.not_before = now + self.lockout
            self.lockouts += 1
            log.warning(
                "password checks from %s locked out for %.0f s after %d wrong passwords",
                address,
                self.lockout,
                by_address.failures,
            )
