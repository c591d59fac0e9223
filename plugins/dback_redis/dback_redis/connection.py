"""The Redis client both roles use, and the lifecycle they share."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from dback_redis import snapshot
from dback_redis.config import RedisConfig

if TYPE_CHECKING:
    from dback_core.server import DbackServer

#: Seconds to connect or to wait for an answer. Short, so that a lost Redis makes a data hook
#: fail quickly (the core then keeps what it has) instead of hanging for the hook timeout.
SOCKET_TIMEOUT = 3.0


def open_client(config: RedisConfig) -> Redis:
    """A client whose connections carry ``config.client_name`` (see CLIENT LIST)."""
    return Redis.from_url(
        config.url,
        decode_responses=True,
        client_name=config.client_name,
        socket_connect_timeout=SOCKET_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        health_check_interval=10,
    )


class Role:
    """A process's part on the bus: its settings, key names, one client and one task that
    runs from ``startup`` to ``shutdown``."""

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.keys = snapshot.Keys(config.prefix)
        self.redis = open_client(config)
        self.server: DbackServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.redis.aclose()
