"""The world as the publisher last saw it, kept in Redis for edges to load from.

Keys under the prefix ``P``:

- ``P:servers``      JSON object: the guild list, key -> provider-style record (with the
  guild password, so edges can admit clients to passworded guilds themselves)
- ``P:guilds``       set of guild keys that have member and meta keys
- ``P:users:<key>``  hash uid -> JSON member record
- ``P:meta:<key>``   hash with ``client_id``
- ``P:events``       the pub/sub channel (see ``codec``)
- ``P:chat``         stream of recent chat bus messages, for replay (see ``chat``)
- ``P:lease``        the elected publisher's process id, with an expiry (see ``election``)
- ``P:fence``        the number of the latest lease taken
- ``P:version``      ``<fence>:<seq>:<publisher id>`` of the last bus message published with a
  snapshot write: a snapshot read with it already holds the effect of every message of that
  publisher up to that number, so an edge skips those still on their way (no older presence
  shown after a newer one)
- ``P:positions``    hash chat source -> highest ``Message.position`` published, written in
  the same MULTI/EXEC as the chat: where the next publisher's providers resume

Writes are queued on a pipeline that the publisher executes as one MULTI/EXEC together with
the matching PUBLISH, so an edge never reads a snapshot older than a message it received.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from redis.asyncio.client import Pipeline, Redis
from redis.typing import EncodableT, FieldT

from dback_core.plugin.host import GuildView, ListedGuild, PluginHost


class Keys:
    """Key names in one namespace."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.servers = f"{prefix}:servers"
        self.guilds = f"{prefix}:guilds"
        self.channel = f"{prefix}:events"
        self.chat = f"{prefix}:chat"
        self.lease = f"{prefix}:lease"
        self.fence = f"{prefix}:fence"
        self.positions = f"{prefix}:positions"
        self.version = f"{prefix}:version"

    def users(self, key: str) -> str:
        return f"{self.prefix}:users:{key}"

    def meta(self, key: str) -> str:
        return f"{self.prefix}:meta:{key}"


def server_record(info: ListedGuild) -> dict[str, Any]:
    """A ``get_server_data`` record that the core turns back into the same ``ServerInfo``."""
    record: dict[str, Any] = {
        "id": info.id,
        "name": info.name,
        "passworded": info.passworded,
        "is_default": info.default,
    }
    if info.password is not None:
        record["password"] = info.password
    return record


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def write_user(
    pipe: Pipeline, keys: Keys, guild_key: str, user: Mapping[str, Any] | None, uid: str
) -> None:
    """Queue one member's record (None: the member left)."""
    if user is None:
        pipe.hdel(keys.users(guild_key), uid)
    else:
        pipe.hset(keys.users(guild_key), uid, _dumps(dict(user)))


def decoded(value: bytes | str) -> str:
    """A reply as text: the client decodes replies (``decode_responses``), which redis-py's
    types cannot know."""
    return value.decode() if isinstance(value, bytes) else value


def write_client_id(pipe: Pipeline, keys: Keys, guild_key: str, client_id: str | None) -> None:
    if client_id:
        pipe.hset(keys.meta(guild_key), "client_id", client_id)
    else:
        pipe.hdel(keys.meta(guild_key), "client_id")


def write_guild(pipe: Pipeline, keys: Keys, guild: GuildView) -> None:
    """Queue a full rewrite of one guild's members and meta."""
    pipe.delete(keys.users(guild.key), keys.meta(guild.key))
    if guild.members:
        members: dict[FieldT, EncodableT] = {
            uid: _dumps(dict(record)) for uid, record in guild.members.items()
        }
        pipe.hset(keys.users(guild.key), mapping=members)
    write_client_id(pipe, keys, guild.key, guild.client_id)
    pipe.sadd(keys.guilds, guild.key)


async def write_all(pipe: Pipeline, redis: Redis, keys: Keys, host: PluginHost) -> None:
    """Queue a rewrite of the whole snapshot from the server's guild list and loaded guilds,
    dropping guilds that are no longer loaded."""
    known = {decoded(key) for key in await redis.smembers(keys.guilds)}
    servers = host.guild_list()
    pipe.set(keys.servers, _dumps({key: server_record(info) for key, info in servers.items()}))
    guilds = host.loaded_guilds()
    for gone in known - set(guilds):
        pipe.delete(keys.users(gone), keys.meta(gone))
        pipe.srem(keys.guilds, gone)
    for guild in guilds.values():
        write_guild(pipe, keys, guild)


async def read_servers(redis: Redis, keys: Keys) -> dict[str, dict[str, Any]] | None:
    """The guild list, or None when no publisher has written one (yet, or since Redis
    restarted empty)."""
    raw = await redis.get(keys.servers)
    if raw is None:
        return None
    servers = json.loads(raw)
    return servers if isinstance(servers, dict) else {}


class AsOf:
    """Which publisher message a snapshot read reflects: its sender and number."""

    __slots__ = ("sender", "seq")

    def __init__(self, sender: str, seq: int) -> None:
        self.sender = sender
        self.seq = seq

    def covers(self, sender: str, seq: int) -> bool:
        """Whether the message ``seq`` of ``sender`` is already in the snapshot read."""
        return sender == self.sender and seq <= self.seq


def write_version(pipe: Pipeline, keys: Keys, fence: int | None, sender: str, seq: int) -> None:
    """Queue the mark of the last message published with this snapshot write."""
    pipe.set(keys.version, f"{fence or 0}:{seq}:{sender}")


async def read_users_as_of(
    redis: Redis, keys: Keys, guild_key: str
) -> tuple[dict[str, dict[str, Any]], AsOf | None]:
    """A guild's members and, read in the same transaction, the message they reflect."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hgetall(keys.users(guild_key))
        pipe.get(keys.version)
        raw, version = await pipe.execute()
    users = {decoded(uid): json.loads(record) for uid, record in raw.items()}
    if version is None:
        return users, None
    _fence, seq, sender = decoded(version).split(":", 2)
    return users, AsOf(sender, int(seq))


async def read_client_id(redis: Redis, keys: Keys, guild_key: str) -> str | None:
    client_id = await redis.hget(keys.meta(guild_key), "client_id")
    return None if client_id is None else decoded(client_id)
