"""Three ``dback serve`` processes: publisher A whose provider is the seeded mock, edges B
and C. The changes the mock makes on A reach the viewers of B and C once each, in A's
order, and only A publishes."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from dback_core.testing import Client
from dback_redis.codec import decode

pytestmark = pytest.mark.redis

WAIT = 30.0
WINDOW = 40
#: The mock keeps talking while a viewer is not reading; an unbounded receive buffer lets
#: the close handshake through at the end instead of waiting for it to time out.
UNBOUNDED = {"max_queue": None}


async def changes(client: Client, count: int) -> list[tuple]:
    """The next ``count`` presence and chat frames, as comparable tuples."""
    seen = []
    while len(seen) < count:
        frame = await client.recv(WAIT)
        if frame["type"] in {"presence", "message"}:
            data = frame["data"]
            seen.append((frame["type"], data["uid"], data.get("status"), data.get("message")))
    return seen


def is_window_of(part: list, whole: list) -> bool:
    return any(whole[i : i + len(part)] == part for i in range(len(whole) - len(part) + 1))


def is_subsequence(part: list, whole: list) -> bool:
    rest = iter(whole)
    return all(item in rest for item in part)


def delivered_once_in_order(edge: list, publisher: list) -> bool:
    """Chat is never deduplicated, so an edge's messages must be an unbroken window of the
    publisher's. A presence may be absorbed by the world an edge loaded just before it
    arrived (it already shows that status), so presences need only keep their order."""
    chat = [change for change in edge if change[0] == "message"]
    presences = [change for change in edge if change[0] == "presence"]
    return is_window_of(chat, [c for c in publisher if c[0] == "message"]) and is_subsequence(
        presences, [c for c in publisher if c[0] == "presence"]
    )


async def test_the_mock_on_a_reaches_b_and_c_once_each_in_order(namespace, start_dback):
    pub_url = await namespace.new_user("pub")
    edge_url = await namespace.new_user("edge")
    pubsub = namespace.admin.pubsub()
    await pubsub.subscribe(f"{namespace.prefix}:events")
    senders: set[str] = set()

    async def record() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                senders.add(decode(message["data"]).sender)

    recorder = asyncio.create_task(record())
    try:
        a = await start_dback(
            pub_url, "publisher", DBACK_MOCK_SEED="11", DBACK_MOCK_INTERVAL="0.05"
        )
        b, c = await start_dback(edge_url), await start_dback(edge_url)
        async with Client(a.url, timeout=WAIT, **UNBOUNDED) as on_a:
            await on_a.join("default")
            await changes(on_a, 5)  # A's viewer is well ahead of B's and C's
            async with (
                Client(b.url, timeout=WAIT, **UNBOUNDED) as on_b,
                Client(c.url, timeout=WAIT, **UNBOUNDED) as on_c,
            ):
                join_b, join_c = await on_b.join("default"), await on_c.join("default")
                assert join_b["data"]["serverName"] == "D-World"
                assert join_b["data"]["users"].keys() == join_c["data"]["users"].keys()
                seen_b, seen_c = await asyncio.gather(changes(on_b, WINDOW), changes(on_c, WINDOW))
                seen_a = await changes(on_a, 3 * WINDOW)
        assert delivered_once_in_order(seen_b, seen_a), "B missed, repeated or reordered"
        assert delivered_once_in_order(seen_c, seen_a), "C missed, repeated or reordered"
        assert sum(change[0] == "message" for change in seen_b) > 0  # the check has teeth
        assert len(senders) == 1, "only the publisher may publish"
    finally:
        recorder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recorder
        await pubsub.aclose()
