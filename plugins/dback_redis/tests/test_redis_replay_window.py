"""The chat replay reads the newest end of the stream.

The stream is trimmed approximately (cheap in Redis), so once it is full it holds somewhat
more entries than ``DBACK_REDIS_CHAT_HISTORY``; a replay that read that many entries from the
oldest end left out the newest - the very chat a process missed during a Redis failover -
which the chaos soak saw as rows lost on some viewers after several minutes of running.
"""

from __future__ import annotations

import time

import pytest

from dback_core.plugin.events import Message
from dback_redis.chat import ChatLimits, Replay, append
from dback_redis.codec import encode
from dback_redis.snapshot import Keys

pytestmark = pytest.mark.redis


async def test_a_replay_of_a_stream_longer_than_the_history_brings_the_newest_chat(namespace):
    limits = ChatLimits(history=100, replay_seconds=60.0)
    keys = Keys(namespace.prefix)
    now = time.time()
    async with namespace.admin.pipeline(transaction=False) as pipe:
        for seq in range(1, 251):
            raw = encode(Message("1", "5", f"m{seq}"), "publisher", seq)
            pipe.xadd(keys.chat, {"m": raw, "t": f"{now:.3f}"})  # untrimmed: longer than 100
        await pipe.execute()
    replay = Replay("edge", limits)
    replay.since = now - 1
    replay.saw("publisher", 200)  # shown live up to 200; 201-250 went by while cut off

    missed = await replay.missed(namespace.admin, keys)

    assert [envelope.seq for envelope in missed] == list(range(201, 251))


async def test_the_approximately_trimmed_stream_is_read_in_order(namespace):
    limits = ChatLimits(history=100, replay_seconds=60.0)
    keys = Keys(namespace.prefix)
    async with namespace.admin.pipeline(transaction=False) as pipe:
        for seq in range(1, 1001):
            raw = encode(Message("1", "5", f"m{seq}"), "publisher", seq)
            append(pipe, keys, limits, raw, time.time())
        await pipe.execute()
    assert await namespace.admin.xlen(keys.chat) >= 100
    replay = Replay("edge", limits)
    replay.since = 0.0
    replay.saw("publisher", 990)

    missed = await replay.missed(namespace.admin, keys)

    assert [envelope.seq for envelope in missed] == list(range(991, 1001))
