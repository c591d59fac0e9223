"""The ``PluginHost`` one plugin's hooks receive: the server's controls, bound to that plugin.

``BoundHost`` knows whose health is reported and whose events are published, and turns the
directory's guilds into the read-only views of ``dback_core.plugin.host``. It is handed what
it uses - the server's controls (``ServerControls``), the directory and the admissions -
not the server object, so what a plugin can reach is written down here, in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from dback_core.loading.hooks import grant_of
from dback_core.plugin.events import Event
from dback_core.plugin.host import GuildView, ListedGuild, Members
from dback_core.serving.access import Access
from dback_core.world.chat_ledger import ChatLedger
from dback_core.world.directory import Directory, Guild


class ServerControls(Protocol):
    """What a plugin may ask of the running server, beside reading the directory."""

    #: Keep every listed guild loaded, watched or not (``PluginHost.keep_loaded``).
    keep_loaded: bool

    @property
    def ready(self) -> bool: ...

    async def wait_ready(self) -> None: ...

    async def publish(self, event: Event, origin: str | None, *, relay: bool) -> None: ...

    async def refresh(self, server_id: str | None, *, always: bool = True) -> bool: ...

    async def refresh_everything(self) -> None: ...

    def report_health(self, plugin: str, status: str, reason: str | None = None) -> None: ...

    async def release_plugins(self, resume: Mapping[str, int] | None = None) -> None: ...

    async def hold_plugins(self) -> None: ...

    def chat_lost(self, plugin: str, count: int, reason: str) -> None: ...

    @property
    def chat(self) -> ChatLedger: ...

    def silence_plugins(self) -> None: ...


class BoundHost:
    """``PluginHost`` for one plugin of one server."""

    def __init__(
        self, controls: ServerControls, directory: Directory, access: Access, plugin_name: str
    ) -> None:
        self._controls = controls
        self._directory = directory
        self._access = access
        self._name = plugin_name

    def __repr__(self) -> str:
        return f"<PluginHost of {self._name}>"

    @property
    def plugin_name(self) -> str:
        return self._name

    async def publish(self, event: Event, *, relay: bool = True) -> None:
        await self._controls.publish(event, self._name if relay else None, relay=relay)

    async def refresh(self, server_id: str | None = None, *, always: bool = True) -> bool:
        return await self._controls.refresh(server_id, always=always)

    async def refresh_everything(self) -> None:
        await self._controls.refresh_everything()

    def guild_list(self) -> Mapping[str, ListedGuild]:
        return dict(self._directory.servers)

    def loaded_guilds(self) -> Mapping[str, GuildView]:
        return {key: guild_view(guild) for key, guild in self._directory.guilds.items()}

    def guild(self, server_id: str) -> GuildView | None:
        guild = self._directory.guilds.get(server_id)
        return guild_view(guild) if guild is not None else None

    def revoke(self, server_id: str, grant: str, message: str) -> int:
        return self._access.revoke(server_id, grant_of(self._name, grant), message)

    def keep_loaded(self, keep: bool = True) -> None:
        self._controls.keep_loaded = keep

    @property
    def ready(self) -> bool:
        return self._controls.ready

    async def wait_ready(self) -> None:
        await self._controls.wait_ready()

    def report_health(self, status: str, reason: str | None = None) -> None:
        self._controls.report_health(self._name, status, reason)

    async def release_plugins(self, resume: Mapping[str, int] | None = None) -> None:
        await self._controls.release_plugins(resume)

    async def hold_plugins(self) -> None:
        await self._controls.hold_plugins()

    def resume_chat(self, positions: Mapping[str, int]) -> None:
        self._controls.chat.resume(positions)

    def resume_position(self, source: str) -> int | None:
        return self._controls.chat.resume_position(source)

    def chat_lost(self, count: int, reason: str) -> None:
        self._controls.chat_lost(self._name, count, reason)

    def silence_plugins(self) -> None:
        self._controls.silence_plugins()


def guild_view(guild: Guild) -> GuildView:
    """The read-only view of one loaded guild that plugins (and tests) are given."""
    return GuildView(guild.key, guild.info, Members(guild.users), guild.client_id, guild.owner)
