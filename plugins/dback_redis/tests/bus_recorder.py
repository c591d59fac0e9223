"""A test's own subscriber on the bus channel: what the processes really sent, in order."""

from __future__ import annotations

import asyncio
import contextlib

from dback_redis.codec import Envelope, decode


class BusRecorder:
    """Every message on the channel, decoded, as the test's own subscriber sees it."""

    def __init__(self, admin, channel: str):
        self.pubsub = admin.pubsub()
        self.channel = channel
        self.seen: list[Envelope] = []

    async def __aenter__(self):
        await self.pubsub.subscribe(self.channel)
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self):
        async for message in self.pubsub.listen():
            if message["type"] == "message":
                self.seen.append(decode(message["data"]))

    async def __aexit__(self, *exc_info):
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.pubsub.aclose()
