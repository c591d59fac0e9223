"""Scarce work shared fairly between client addresses: turns handed out round-robin.

Work a client can make the server do - hash a password, ask Discord about a login token -
has a hard bound (a few threads, a few calls in flight, a rate). First come, first served
lets one address with many connections fill that bound and keep it full, so everyone else
waits or is refused. Here each address has its own short queue, the queues are served in
turn (one turn per address per round), and an address already holding ``per_address``
turns or places in its queue is refused at once rather than queued: a flood from one
address costs every other address at most one turn per round.

``FairTurns`` hands out the turns; ``FairThreadPool`` runs blocking work (a password hash)
in threads under them, keeping a turn until its thread really ends - a caller that gave up
(a timeout) does not free a thread that is still working. An "address" is whatever key the
caller passes: the core gives plugins the client's address as it counts it (an IPv4
address or an IPv6 /64), the ``address`` argument of ``authorize``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import TypeVar

from dback_core.plugin.ratelimit import TokenBucket

_Result = TypeVar("_Result")


class TurnRefused(Exception):
    """No turn: the address already holds all it may, or its turn did not come in time."""


class Turn:
    """The right to do one piece of the scarce work; ``release`` it when the work ended."""

    __slots__ = ("_owner", "address", "released")

    def __init__(self, owner: FairTurns, address: str | None) -> None:
        self._owner = owner
        #: The address it was handed to; None for spare capacity (``FairTurns.spare``).
        self.address = address
        self.released = False

    def release(self) -> None:
        """Give the turn back (again: nothing happens); the next address in line gets it."""
        if not self.released:
            self.released = True
            self._owner.give_back(self)


class FairTurns:
    """At most ``slots`` turns out at once - and, with a ``bucket``, no more than it allows
    over time - handed out round-robin between the addresses waiting.

    An address holds at most ``per_address`` turns and places in line together: one more
    ``acquire`` is refused at once with ``TurnRefused``. With ``max_wait`` a place in line
    whose turn has not come after that many seconds is given up, also with ``TurnRefused``.
    """

    def __init__(
        self,
        slots: int,
        per_address: int,
        *,
        bucket: TokenBucket | None = None,
        max_wait: float | None = None,
    ) -> None:
        self.slots = max(1, slots)
        self.per_address = max(1, per_address)
        self.bucket = bucket
        self.max_wait = max_wait
        #: Turns handed out and not yet released.
        self.out = 0
        #: Per address: turns out plus places in line.
        self.held: Counter[str] = Counter()
        #: Addresses with someone in line, in the order they are served next.
        self.lines: OrderedDict[str, deque[asyncio.Future[Turn]]] = OrderedDict()
        self._wake: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> int:
        """Places in line, over every address."""
        return sum(len(line) for line in self.lines.values())

    async def acquire(self, address: str) -> Turn:
        """A turn for ``address``: at once when one is free and nobody waits, else when its
        turn comes round. Raises ``TurnRefused`` when the address already holds
        ``per_address``, or when ``max_wait`` passes first."""
        if self.held[address] >= self.per_address:
            raise TurnRefused(f"{address} already holds {self.per_address} turns")
        self.held[address] += 1
        if not self.lines and self._free():
            self.out += 1
            return Turn(self, address)
        place: asyncio.Future[Turn] = asyncio.get_running_loop().create_future()
        self.lines.setdefault(address, deque()).append(place)
        self._hand_out()
        try:
            async with asyncio.timeout(self.max_wait):
                return await asyncio.shield(place)
        except BaseException as error:
            self._leave_line(address, place)
            if isinstance(error, TimeoutError):
                raise TurnRefused(f"no turn for {address} within {self.max_wait} s") from None
            raise

    def spare(self) -> Turn | None:
        """A turn for optional work, only when one is free now and nobody waits for it."""
        if self.lines or not self._free():
            return None
        self.out += 1
        return Turn(self, None)

    def give_back(self, turn: Turn) -> None:
        self.out -= 1
        if turn.address is not None:
            self._drop_hold(turn.address)
        self._hand_out()

    def _free(self) -> bool:
        """Whether a turn may start now (taking the bucket's token when it may)."""
        return self.out < self.slots and (self.bucket is None or self.bucket.take())

    def _hand_out(self) -> None:
        """Give free turns to the addresses in line, one per address per round."""
        while self.lines and self.out < self.slots:
            address, line = next(iter(self.lines.items()))
            if self.bucket is not None and not self.bucket.take():
                self._wake_when_refilled()
                return
            place = line.popleft()
            if line:
                self.lines.move_to_end(address)
            else:
                del self.lines[address]
            self.out += 1
            place.set_result(Turn(self, address))

    def _wake_when_refilled(self) -> None:
        if self._wake is not None or self.bucket is None or self.bucket.rate <= 0:
            return
        delay = max(0.0, (1 - self.bucket.tokens) / self.bucket.rate)
        self._wake = asyncio.get_running_loop().call_later(delay, self._woken)

    def _woken(self) -> None:
        self._wake = None
        self._hand_out()

    def _leave_line(self, address: str, place: asyncio.Future[Turn]) -> None:
        """The caller stopped waiting (timeout, cancelled): take it out of line, or give
        back the turn it was handed meanwhile."""
        if place.done() and not place.cancelled():
            place.result().release()
            return
        place.cancel()
        line = self.lines.get(address)
        if line is not None:
            with contextlib.suppress(ValueError):
                line.remove(place)
            if not line:
                del self.lines[address]
        self._drop_hold(address)

    def _drop_hold(self, address: str) -> None:
        self.held[address] -= 1
        if self.held[address] <= 0:
            del self.held[address]


class FairThreadPool:
    """Blocking work - a password hash - in at most ``workers`` threads, shared fairly
    between addresses (``FairTurns``; ``per_address`` turns and places in line each).

    A thread's turn is released when the thread ends, not when its caller stops waiting:
    ``workers`` is a hard bound on the threads at work, whatever time limits the callers
    run under. ``close`` when done (a plugin's ``shutdown``).
    """

    def __init__(self, workers: int, per_address: int, *, name: str = "dback-fair") -> None:
        self.turns = FairTurns(workers, per_address)
        self.executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix=name)

    async def run(self, address: str, function: Callable[..., _Result], *args: object) -> _Result:
        """``function(*args)`` in a thread once ``address``'s turn comes; its result.

        Raises ``TurnRefused`` when the address already has ``per_address`` pieces of work
        running or waiting."""
        turn = await self.turns.acquire(address)
        loop = asyncio.get_running_loop()
        try:
            work = self.executor.submit(function, *args)
        except BaseException:
            turn.release()
            raise

        def ended(_: concurrent.futures.Future[_Result]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(turn.release)

        work.add_done_callback(ended)
        return await asyncio.wrap_future(work)

    def close(self) -> None:
        """Stop taking work; threads at work finish on their own."""
        self.executor.shutdown(wait=False, cancel_futures=True)
