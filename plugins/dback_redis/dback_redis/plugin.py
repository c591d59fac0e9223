"""The plugin object the ``dback`` entry point names: one instance per server, in the role
that ``DBACK_REDIS_ROLE`` selects.

``auto`` (the default) is elected: see ``auto.py``. The pinned roles are separate classes
because they implement different hooks: an edge implements
the data hooks (so the embedded mock steps aside for them), ``event_sources`` (returning
none, so the mock's simulation does not run beside the bus) and ``event_applied`` (for its
own d-back API broadcasts); a publisher implements only ``event_applied`` and leaves the
data to the real providers.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from dback_core import hookimpl
from dback_core.plugin.events import Event
from dback_core.plugin.host import PluginHost
from dback_core.plugin.server_settings import Settings
from dback_redis.auto import Elected
from dback_redis.config import AUTO, EDGE, PUBLISHER, ROLE_ENV, SETTINGS, RedisConfig
from dback_redis.connection import published_positions
from dback_redis.edge import Edge
from dback_redis.publisher import Publisher

#: Seconds at most that ``startup`` of a process that lost the first election waits for the
#: publisher's first snapshot.
SNAPSHOT_WAIT = 30.0


class RedisPlugin:
    """Common to both roles: configuration, ``dback plugins`` detail, lifecycle."""

    dback_settings = SETTINGS

    def __new__(cls, config: RedisConfig | None = None) -> RedisPlugin:
        if cls is RedisPlugin:
            config = config or RedisConfig.from_env()
            roles = {PUBLISHER: PublisherPlugin, EDGE: EdgePlugin}
            cls = roles.get(config.role, AutoPlugin)
        return super().__new__(cls)

    def __init__(self, config: RedisConfig | None = None) -> None:
        self.config = config or RedisConfig.from_env()

    @property
    def dback_detail(self) -> str:
        """What ``dback plugins`` and ``/api/plugins`` show: role, Redis (no password), prefix."""
        return self.config.describe()

    @hookimpl
    def worker_sharing(self) -> bool | str:
        """``dback serve --workers N`` shares one world through Redis in the ``auto`` role,
        where the workers elect the one that runs the providers; a pinned role cannot."""
        if self.config.role == AUTO:
            return True
        return (
            f"{ROLE_ENV}=auto (the default), not {self.config.role!r}: the workers elect "
            "the one that runs the providers"
        )


class PublisherPlugin(RedisPlugin):
    """Publishes what the local providers change."""

    def __init__(self, config: RedisConfig | None = None) -> None:
        super().__init__(config)
        self.role = Publisher(self.config)

    @hookimpl
    async def startup(self, host: PluginHost) -> None:
        # A restarted publisher resumes where it (or the one before it) published up to:
        # the chat written while no publisher ran reaches every process.
        host.resume_chat(await published_positions(self.role.redis, self.role.keys))
        await self.role.start(host)

    @hookimpl
    async def shutdown(self) -> None:
        await self.role.stop()

    @hookimpl
    def event_applied(self, event: Event) -> None:
        self.role.applied_here(event)


class ServingRole(Protocol):
    """What the edge and the elected role both do behind the data hooks."""

    async def start(self, host: PluginHost) -> None: ...

    async def stop(self) -> None: ...

    async def servers(self) -> dict[str, dict[str, Any]] | None: ...

    async def users(self, server_id: str) -> dict[str, dict[str, Any]] | None: ...

    async def client_id(self, server_id: str) -> str | None: ...

    def applied_here(self, event: Event, origin: str | None) -> None: ...


class EdgePlugin(RedisPlugin):
    """Serves the publisher's world."""

    def __init__(self, config: RedisConfig | None = None) -> None:
        super().__init__(config)
        self.role: ServingRole = self.serving_role()

    def serving_role(self) -> ServingRole:
        return Edge(self.config)

    @hookimpl
    async def startup(self, host: PluginHost, settings: Settings) -> None:
        await self.role.start(host)

    @hookimpl
    async def shutdown(self) -> None:
        await self.role.stop()

    @hookimpl
    async def get_server_data(self) -> dict[str, dict[str, Any]] | None:
        return await self.role.servers()

    @hookimpl
    async def get_user_data(self, server_id: str) -> dict[str, dict[str, Any]] | None:
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


class AutoPlugin(EdgePlugin):
    """Elected: an edge, or the publisher while it holds the lease (its hooks are the
    edge's, answered by whichever role it holds). The other plugins run only while it is
    the publisher (``dback_holds_others``)."""

    dback_holds_others = True

    def serving_role(self) -> ServingRole:
        self.elected = Elected(self.config)
        return self.elected

    @hookimpl
    async def startup(self, host: PluginHost, settings: Settings) -> None:
        """Start, then wait for the publisher's first snapshot when another process leads -
        within half of the core's time limit for this hook, so the hook never runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(SNAPSHOT_WAIT, settings.provider_timeout / 2)
        await self.elected.start(host)
        await self.elected.wait_for_snapshot(deadline - loop.time())

    @property
    def dback_detail(self) -> str:
        detail = self.config.describe()
        if self.elected.host is None:
            return detail
        return detail.replace("role=auto", f"role=auto ({self.elected.current})", 1)
