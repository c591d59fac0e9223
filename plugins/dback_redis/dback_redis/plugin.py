"""The plugin object the ``dback`` entry point names: one instance per server, in the role
that ``DBACK_REDIS_ROLE`` selects.

The roles are separate classes because they implement different hooks: an edge implements
the data hooks (so the embedded mock steps aside for them), ``event_sources`` (returning
none, so the mock's simulation does not run beside the bus) and ``event_applied`` (for its
own d-back API broadcasts); a publisher implements only ``event_applied`` and leaves the
data to the real providers.
"""

from __future__ import annotations

from typing import Any

from dback_core import hookimpl
from dback_core.events import Event
from dback_redis.config import PUBLISHER, RedisConfig
from dback_redis.edge import Edge
from dback_redis.publisher import Publisher


class RedisPlugin:
    """Common to both roles: configuration, ``dback plugins`` detail, lifecycle."""

    def __new__(cls, config: RedisConfig | None = None) -> RedisPlugin:
        if cls is RedisPlugin:
            config = config or RedisConfig.from_env()
            cls = PublisherPlugin if config.role == PUBLISHER else EdgePlugin
        return super().__new__(cls)

    def __init__(self, config: RedisConfig | None = None) -> None:
        self.config = config or RedisConfig.from_env()
        self.dback_detail = self.config.describe()


class PublisherPlugin(RedisPlugin):
    """Publishes what the local providers change."""

    def __init__(self, config: RedisConfig | None = None) -> None:
        super().__init__(config)
        self.role = Publisher(self.config)

    @hookimpl
    def startup(self, server: Any) -> None:
        self.role.start(server)

    @hookimpl
    async def shutdown(self) -> None:
        await self.role.stop()

    @hookimpl
    def event_applied(self, event: Event) -> None:
        self.role.applied_here(event)


class EdgePlugin(RedisPlugin):
    """Serves the publisher's world."""

    def __init__(self, config: RedisConfig | None = None) -> None:
        super().__init__(config)
        self.role = Edge(self.config)

    @hookimpl
    async def startup(self, server: Any) -> None:
        await self.role.start(server)

    @hookimpl
    async def shutdown(self) -> None:
        await self.role.stop()

    @hookimpl
    async def get_server_data(self) -> dict[str, dict[str, Any]]:
        return await self.role.servers()

    @hookimpl
    async def get_user_data(self, server_id: str) -> dict[str, dict[str, Any]]:
        return await self.role.users(server_id)

    @hookimpl
    async def get_client_id(self, server_id: str) -> str | None:
        return await self.role.client_id(server_id)

    @hookimpl
    def event_sources(self) -> list[Any]:
        return []

    @hookimpl
    def event_applied(self, event: Event, origin: str | None) -> None:
        self.role.applied_here(event, origin)
