"""What a plugin may do to the running server: the ``PluginHost`` handle its hooks receive.

A plugin that only answers hooks and yields events from its sources needs none of this. One
that reports its own health, injects events from outside (a message bus), mirrors the loaded
world somewhere else or decides where the other plugins run asks the handle ``startup``
receives as ``host``. The handle is bound to that one plugin, so it knows whose health is
reported and whose events are published; it offers read-only views of the directory, never
the directory itself, so a plugin cannot corrupt the core's state or come to depend on how
the core keeps it. Everything here is the stable plugin surface; the server behind it
(``dback_core.serving.bound_host`` implements the protocol) is not.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from dback_core.plugin.events import Event

__all__ = ["GuildView", "ListedGuild", "Members", "PluginHost"]


class ListedGuild(Protocol):
    """One entry of the guild list, as the core merged it from every plugin (read-only)."""

    @property
    def key(self) -> str:
        """The guild's snowflake: the key of ``get_server_data`` and of every event."""

    @property
    def id(self) -> str:
        """The short id clients ask for (``dworld``)."""

    @property
    def name(self) -> str: ...

    @property
    def passworded(self) -> bool: ...

    @property
    def default(self) -> bool:
        """Whether it is the guild a client without a choice joins."""

    @property
    def password(self) -> str | None:
        """The secret the core compares, when the providing plugin gave one. Never send it
        to clients; a bus passes it on so other processes can admit clients themselves."""

    @property
    def plugin(self) -> str:
        """The name of the plugin whose record won."""


class Members(Mapping[str, Mapping[str, Any]]):
    """A guild's members by uid, each record read-only (``uid``, ``username``, ``status``,
    ``roleColor``); ``dict(record)`` gives a copy to keep or serialise.

    A live view, not a copy: it follows the guild until the guild is reloaded, and costs
    nothing to create however large the guild.
    """

    __slots__ = ("_users",)

    def __init__(self, users: dict[str, dict[str, Any]]) -> None:
        self._users = users

    def __getitem__(self, uid: str) -> Mapping[str, Any]:
        return MappingProxyType(self._users[uid])

    def __iter__(self) -> Iterator[str]:
        return iter(self._users)

    def __len__(self) -> int:
        return len(self._users)


@dataclass(frozen=True, slots=True)
class GuildView:
    """One loaded guild as viewers see it now: read-only."""

    key: str
    info: ListedGuild
    members: Members
    client_id: str | None
    #: The plugin that provided the members, None when none did (served empty).
    owner: str | None


@runtime_checkable
class PluginHost(Protocol):
    """The running server as one plugin sees it. ``startup`` receives it as ``host``; keep it
    on ``self`` for later. Every method may be called from the event loop at any time after
    ``startup`` began, until ``shutdown`` returns."""

    @property
    def plugin_name(self) -> str:
        """The name this plugin is loaded under (``dback-mine``)."""

    async def publish(self, event: Event, *, relay: bool = True) -> None:
        """Apply ``event`` and deliver it to the viewers of its guild.

        With ``relay`` (the default) the event counts as this plugin's own, exactly like one
        its event source yields: it touches only guilds this plugin provides, and plugins
        implementing ``event_applied`` are told with ``origin`` set to this plugin's name.
        ``relay=False`` injects an event that happened elsewhere (another process on a bus):
        it may touch any loaded guild and is not reported to ``event_applied``, so nothing
        is echoed back.
        """

    async def refresh(self, server_id: str | None = None, *, always: bool = True) -> bool:
        """Reload guild ``server_id`` (None: the guild list) from the plugins and send its
        viewers the new world; True when viewers were sent something.

        ``always=False`` sends only when the reload changed what viewers see - right after a
        reconnect, where usually nothing changed and thousands of viewers need no resend.
        """

    async def refresh_everything(self) -> None:
        """Reload the guild list and every loaded guild; viewers get a new world only where
        it changed - what a bus does after it reconnected and may have missed changes."""

    def guild_list(self) -> Mapping[str, ListedGuild]:
        """The merged guild list by snowflake, as clients are shown it (a copy)."""

    def loaded_guilds(self) -> Mapping[str, GuildView]:
        """Every guild loaded now (viewed, or kept loaded) by snowflake: a copy of the map,
        with a live read-only view of each guild."""

    def guild(self, server_id: str) -> GuildView | None:
        """The loaded guild ``server_id``, or None when it is not loaded."""

    def revoke(self, server_id: str, grant: str, message: str) -> int:
        """Void every admission to guild ``server_id`` that this process's ``authorize``
        made under ``grant`` (the str it returned): viewers watching the guild are taken
        out at once with an ``error`` saying ``message``; the others must log in again to
        return. Returns how many admissions were voided."""

    def keep_loaded(self, keep: bool = True) -> None:
        """Keep every listed guild loaded, watched or not (a bus publisher must see events
        for all guilds). Call it in ``startup``: the guilds are then loaded at start and
        whenever the list grows, and the periodic reload no longer evicts unwatched ones."""

    @property
    def ready(self) -> bool:
        """Whether the server has loaded its guilds and listens (False again once it stops)."""

    async def wait_ready(self) -> None:
        """Return once the server has loaded its guilds and listens (at once if it does).

        ``startup`` runs before anything is loaded; a task that needs the loaded world
        waits here instead of polling."""

    def report_health(self, status: str, reason: str | None = None) -> None:
        """Say how this plugin is: ``serving``, ``unavailable`` or ``failed`` (the constants
        in ``dback_core.plugin.health``), with a reason operators see in ``dback plugins``,
        ``/api/plugins`` and ``/readyz``. Only changes are logged: report on every retry."""

    async def release_plugins(self, resume: Mapping[str, int] | None = None) -> None:
        """Start the other plugins this one holds on standby (it sets
        ``dback_holds_others = True``) and reload everything from them; no-op when none are
        held. For a bus whose elected process runs the providers. ``resume`` gives, per chat
        source (``Message.source``), the position up to which the previous publisher
        delivered chat: the released providers resume after it (``resume_position``)."""

    async def hold_plugins(self) -> None:
        """Stop the other plugins (their event sources, their ``shutdown``) and serve without
        them; the reverse of ``release_plugins``. Silences them first (``silence_plugins``);
        an event source that does not end within a second of its cancellation is abandoned
        and logged, never awaited for ever."""

    def silence_plugins(self) -> None:
        """Drop every event of the other plugins from this moment, and stop asking them
        their data, without waiting for anything: for a holder that must go quiet at once
        (a publisher whose lease ran out). ``hold_plugins`` then stops them; until it does
        they stay silenced, and ``release_plugins`` stops them before starting them again."""

    def resume_chat(self, positions: Mapping[str, int]) -> None:
        """Say up to which position each chat source (``Message.source``) was delivered
        elsewhere - by a process that ran the providers before this one: a provider whose
        event source starts after this call resumes after it (``resume_position``). Call it
        in ``startup``, before the event sources start; ``release_plugins(resume=...)`` does
        the same for the plugins it releases."""

    def resume_position(self, source: str) -> int | None:
        """Where chat of ``source`` is to resume: the highest ``Message.position`` of it
        delivered - shown here, or handed over by a bus (``resume_chat``,
        ``release_plugins``). None when nothing is known: start from now. A provider that
        can replay (a table with ids) asks when its event source starts and delivers what
        came after, so nothing is lost when another process ran it until a moment ago; what
        it delivers twice, the core shows once."""

    def chat_lost(self, count: int, reason: str) -> None:
        """Count ``count`` chat messages this plugin could not deliver (``reason``: older
        than the replay window, history trimmed...) in ``/metrics``
        (``dback_chat_lost_total{plugin,reason}``) and log it: a loss is never silent."""
