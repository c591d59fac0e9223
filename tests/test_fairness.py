"""Scarce work shared fairly between addresses: turns round-robin, a cap per address, and a
thread pool whose bound holds even when callers give up."""

from __future__ import annotations

import asyncio
import threading

import pytest

from dback_core.plugin.fairness import FairThreadPool, FairTurns, TurnRefused
from dback_core.plugin.ratelimit import TokenBucket


async def test_addresses_in_line_are_served_in_turn():
    turns = FairTurns(1, per_address=10)
    first = await turns.acquire("flood")
    served: list[str] = []

    async def wait_for_turn(address: str) -> None:
        turn = await turns.acquire(address)
        served.append(address)
        turn.release()

    tasks = [asyncio.create_task(wait_for_turn("flood")) for _ in range(5)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(wait_for_turn("viewer")))
    await asyncio.sleep(0)
    first.release()
    await asyncio.gather(*tasks)
    assert served[:2] == ["flood", "viewer"], served


async def test_an_address_holding_its_share_is_refused_at_once():
    turns = FairTurns(4, per_address=2)
    held = [await turns.acquire("flood"), await turns.acquire("flood")]
    with pytest.raises(TurnRefused):
        await turns.acquire("flood")
    other = await turns.acquire("viewer")
    for turn in [*held, other]:
        turn.release()
        turn.release()  # twice: no effect
    assert turns.out == 0 and not turns.held


async def test_a_place_in_line_is_given_up_after_max_wait_or_when_cancelled():
    turns = FairTurns(1, per_address=5, max_wait=0.05)
    held = await turns.acquire("a")
    with pytest.raises(TurnRefused):
        await turns.acquire("b")
    waiting = asyncio.create_task(turns.acquire("c"))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert turns.waiting == 0 and dict(turns.held) == {"a": 1}
    held.release()
    assert turns.out == 0


async def test_a_bucket_paces_the_turns_and_spare_ones_never_jump_the_line():
    turns = FairTurns(10, per_address=5, bucket=TokenBucket(20.0, 1))
    first = await turns.acquire("a")
    assert turns.spare() is None  # the bucket is empty
    second = asyncio.create_task(turns.acquire("b"))
    await asyncio.sleep(0)
    assert turns.spare() is None  # someone waits
    turn = await asyncio.wait_for(second, 5)  # handed out when the bucket refills
    for held in (first, turn):
        held.release()


async def test_the_thread_bound_holds_when_callers_give_up():
    pool = FairThreadPool(2, per_address=10)
    release = threading.Event()
    running = 0
    most = 0
    lock = threading.Lock()

    def work() -> str:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(5)
        with lock:
            running -= 1
        return "done"

    try:
        for _ in range(6):  # each caller gives up long before its thread ends
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pool.run("guesser", work), 0.02)
        assert pool.turns.out <= 2 and most <= 2
        release.set()
        assert await asyncio.wait_for(pool.run("viewer", lambda: "mine"), 5) == "mine"
    finally:
        release.set()
        pool.close()
    assert most == 2
