"""Opening the Redis client both roles use."""

from __future__ import annotations

from redis.asyncio import Redis

from dback_redis.config import RedisConfig

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
