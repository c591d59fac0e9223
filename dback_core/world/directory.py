"""The in-memory view of every guild: loaded from the providers once, kept current by events.

d-back asks its data callbacks again on every join; here a guild is loaded once (one load at a
time per guild, however many clients join at once), every join is served from memory, and
the encoded join frames are cached until the guild changes, so a join into a 10,000-member
guild costs a dictionary lookup, not a serialisation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from dback_core.plugin.events import ClientIdUpdate, Event, Message, Presence
from dback_core.wire import protocol
from dback_core.wire.inputs import CHANNEL_CHARS, ID_CHARS, MESSAGE_CHARS, clean_text
from dback_core.world.records import (
    ServerInfo,
    merge_servers,
    normalize_color,
    normalize_status,
    normalize_users,
    record_warnings,
    username,
)

log = logging.getLogger(__name__)


#: Encoded joins kept per guild: one per way of asking for it ("default", short id, snowflake).
JOIN_CACHE_SIZE = 4


@dataclass
class Guild:
    """One loaded guild: its members, the plugin that provided them, and cached encodings.

    The users map is encoded once, and each join frame once per requested name, as UTF-8
    bytes ready for the wire; any change to the members drops both. A join into a
    10,000-member guild (about 1 MB) is then a dictionary lookup, not a serialisation.
    """

    info: ServerInfo
    users: dict[str, dict[str, Any]]
    owner: str | None
    client_id: str | None
    _users_json: str | None = None
    _joins: dict[str, tuple[tuple[str, str | None], bytes]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.info.key

    def users_json(self) -> str:
        if self._users_json is None:
            self._users_json = protocol.dumps(self.users)
        return self._users_json

    def join_frame(self, requested: str) -> bytes:
        """The encoded ``server-join`` for a client that asked for ``requested``."""
        stamp = (self.info.name, self.client_id)  # both can change without a member change
        cached = self._joins.get(requested)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        frame = protocol.server_join(
            requested, self.users_json(), self.info.name, self.client_id
        ).encode()
        if len(self._joins) >= JOIN_CACHE_SIZE:
            self._joins.clear()
        self._joins[requested] = (stamp, frame)
        return frame

    def looks_like(self, other: Guild) -> bool:
        """Whether a viewer of ``other`` would see this guild the same: members, name and
        client id. Compares the data, not the encodings, so nothing is serialised for it."""
        return (
            self.users == other.users
            and self.client_id == other.client_id
            and self.info.name == other.info.name
        )

    def changed(self) -> None:
        self._users_json = None
        self._joins.clear()


class Providers(Protocol):
    """The plugins' answers the directory is built from (``dback_core.loading.hooks``)."""

    async def get_server_data(self) -> list[tuple[str, dict[str, Any] | None]]:
        """Each plugin's guild map in order, None for a plugin whose call failed."""

    async def get_user_data(self, server_id: str) -> tuple[str | None, dict[str, Any], bool]:
        """A guild's members, the plugin that gave them, and whether one before it failed."""

    async def get_client_id(self, server_id: str) -> str | None: ...


class Directory:
    """Guild list and loaded guilds; turns events into encoded frames."""

    def __init__(
        self,
        hooks: Providers,
        on_access_change: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.hooks = hooks
        #: Told, synchronously, the keys of guilds whose access rules changed or that left
        #: the list, as soon as the new list is in place: before anything else can be sent
        #: to a viewer who is no longer allowed in.
        self.on_access_change = on_access_change
        self.servers: dict[str, ServerInfo] = {}
        self.guilds: dict[str, Guild] = {}
        self._by_short_id: dict[str, str] = {}
        self._server_list_frame = protocol.server_list({})
        self._locks: dict[str, asyncio.Lock] = {}
        #: Changes applied while a guild is being (re)loaded, replayed onto the fresh copy.
        self._arrived_during_load: dict[str, list[tuple[Event, str | None]]] = {}
        self._last_answers: dict[str, dict[str, Any]] = {}
        self.servers_loaded = False

    @property
    def server_list_frame(self) -> str:
        return self._server_list_frame

    async def load_servers(self) -> bool:
        """Reload the merged guild list; True when what clients see changed.

        A plugin whose call failed keeps the guilds of its last good answer: a database
        hiccup during a periodic reload must not empty everyone's server list.
        """
        answers = []
        for plugin, answer in await self.hooks.get_server_data():
            if answer is None:
                answer = self._last_answers.get(plugin)
                if answer is None:
                    continue
                log.warning("plugin %s: keeping its last guild list", plugin)
            else:
                self._last_answers[plugin] = answer
            answers.append((plugin, answer))
        return self.install_servers(merge_servers(answers))

    def install_servers(self, servers: dict[str, ServerInfo]) -> bool:
        """Make ``servers`` the guild list; True when what clients see changed.

        Every change of the list goes through here, so that guilds that left it, or whose
        access rules changed, are reported to ``on_access_change``.
        """
        frame = protocol.server_list({key: info.public() for key, info in servers.items()})
        changed = frame != self._server_list_frame
        previous = self.servers
        self.servers = servers
        self._by_short_id = {}
        for key, info in servers.items():
            self._by_short_id.setdefault(info.id, key)
        self._server_list_frame = frame
        self.servers_loaded = True
        for key in [key for key in self.guilds if key not in servers]:
            del self.guilds[key]
        for key, guild in self.guilds.items():
            if guild.info != servers[key]:
                guild.info = servers[key]
        revoked = [
            key
            for key, info in previous.items()
            if key not in servers or servers[key].access != info.access
        ]
        if revoked and self.on_access_change is not None:
            self.on_access_change(revoked)
        return changed

    def resolve(self, requested: str) -> ServerInfo | None:
        """Find a guild by short id, by snowflake, or ``default``."""
        if requested == "default":
            return next((info for info in self.servers.values() if info.default), None)
        key = self._by_short_id.get(requested, requested)
        return self.servers.get(key)

    async def guild(self, key: str) -> Guild | None:
        """The loaded guild, loading it first if needed (one load at a time per guild)."""
        guild = self.guilds.get(key)
        if guild is not None:
            return guild
        async with self._lock(key):
            guild = self.guilds.get(key)
            if guild is None:
                guild = await self._load(key)
        return guild

    async def load(self, key: str) -> Guild | None:
        """(Re)load a guild from the providers and keep it; None if it is not listed.

        When a provider failed and nobody answered, the members already in memory are kept;
        a guild never loaded is served empty but not kept, so the next join asks again
        instead of caching the failure until the next refresh. Loads of one guild run one
        at a time.
        """
        async with self._lock(key):
            return await self._load(key)

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def _load(self, key: str) -> Guild | None:
        info = self.servers.get(key)
        if info is None:
            return None
        # The providers may answer with data read before a change that reaches ``apply``
        # while they are being asked; such changes are kept and replayed onto the answer.
        arrived = self._arrived_during_load[key] = []
        try:
            return await self._build(key, info, arrived)
        finally:
            del self._arrived_during_load[key]

    async def _build(
        self, key: str, info: ServerInfo, arrived: list[tuple[Event, str | None]]
    ) -> Guild | None:
        owner, users, failed = await self.hooks.get_user_data(key)
        if failed and owner is None:
            current = self.guilds.get(key)
            if current is not None:
                log.warning("guild %s: providers failed; keeping its current members", key)
                return current
            log.warning("guild %s: providers failed; serving it empty for now", key)
            return Guild(info=info, users={}, owner=None, client_id=None)
        client_id = await self.hooks.get_client_id(key)
        guild = Guild(
            info=info,
            users=normalize_users(users, owner or "?"),
            owner=owner,
            client_id=client_id,
        )
        for event, origin in arrived:
            if origin is None or owner is None or origin == owner:
                self._change(guild, event, origin)
        if key in self.servers:
            self.guilds[key] = guild
        log.debug("loaded guild %s: %d members from %s", key, len(guild.users), owner)
        return guild

    def evict(self, key: str) -> None:
        self.guilds.pop(key, None)

    def apply(self, event: Presence | Message | ClientIdUpdate, origin: str | None) -> bytes | None:
        """Apply an event to its guild and return the frame for its viewers, or None.

        Events for guilds nobody has loaded are dropped: the next load reads fresh data, and
        changes that arrive while a guild loads are replayed onto what it loaded. A
        plugin's events only touch guilds that plugin provided (``origin`` None means the
        API or the bus, which may touch any guild).
        """
        arrived = self._arrived_during_load.get(event.server_id)
        if arrived is not None and not isinstance(event, Message):
            arrived.append((event, origin))
        guild = self.guilds.get(event.server_id)
        if guild is None:
            return None
        if origin is not None and guild.owner is not None and origin != guild.owner:
            return None
        if isinstance(event, Message):
            return self._message(guild, event, origin)
        return self._change(guild, event, origin)

    def _message(self, guild: Guild, event: Message, origin: str | None) -> bytes | None:
        """The chat frame, with text and channel cut to their limits, or None when the
        client would ignore it (unknown member, empty text)."""
        if event.uid not in guild.users or not event.message:
            return None
        text, problem = clean_text(event.message, MESSAGE_CHARS)
        channel, channel_problem = clean_text(event.channel, CHANNEL_CHARS)
        if problem or channel_problem:
            plugin = origin or guild.owner or "api"
            record_warnings.warning(
                (plugin, "message", guild.key, event.uid),
                "plugin %s: message from %s in guild %s: %s",
                plugin,
                event.uid,
                guild.key,
                problem or f"channel {channel_problem}",
            )
        return protocol.message(guild.key, event.uid, text, channel)

    def _change(self, guild: Guild, event: Event, origin: str | None) -> bytes | None:
        """Apply a presence or client-id change to ``guild``; the frame, or None if no change."""
        if isinstance(event, Presence):
            return self._apply_presence(guild, event, origin or guild.owner or "api")
        if isinstance(event, ClientIdUpdate):
            guild.client_id = event.client_id
            return protocol.client_id_update(guild.key, event.client_id)
        return None

    def _apply_presence(self, guild: Guild, event: Presence, plugin: str) -> bytes | None:
        """Apply a member's change the way a join would load the same record: a name left
        out (None) keeps the known one, an empty or missing name is the uid, an oversized
        one is cut (see ``records.username``)."""
        known = guild.users.get(event.uid)
        if event.delete:
            if known is None:
                return None
            del guild.users[event.uid]
            guild.changed()
            return protocol.presence(guild.key, known, delete=True)
        if known is None and clean_text(event.uid, ID_CHARS)[1] is not None:
            record_warnings.warning(
                (plugin, "user", str(event.uid)[:ID_CHARS]),
                "plugin %s: dropped a presence in guild %s: no usable uid",
                plugin,
                guild.key,
            )
            return None
        if event.username is None and known is not None:
            name = known["username"]
        else:
            name = username(event.username, event.uid, plugin)
        user = {
            "uid": event.uid,
            "username": name,
            "status": normalize_status(event.status, plugin),
            "roleColor": (
                normalize_color(event.role_color, plugin)
                if event.role_color is not None
                else (known["roleColor"] if known else False)
            ),
        }
        if user == known:
            return None
        guild.users[event.uid] = user
        guild.changed()
        return protocol.presence(guild.key, user)
