"""The events that change what viewers see.

Everything that changes a guild's world - a plugin's event source, the d-back style
``broadcast_*`` API, a bus between processes - produces one of these small values, and the
core applies them the same way: update the in-memory directory, encode once, fan out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["online", "idle", "dnd", "offline"]
VALID_STATUSES: frozenset[str] = frozenset({"online", "idle", "dnd", "offline"})


@dataclass(frozen=True, slots=True)
class Presence:
    """A member's status changed, the member appeared, or (``delete``) left the guild.

    ``username`` and ``role_color`` may be None for a member the guild already knows; the
    core fills them in, because the client creates a character from any presence it sees.
    """

    server_id: str
    uid: str
    status: str
    username: str | None = None
    role_color: str | Literal[False] | None = None
    delete: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    """A member said something; the client shows it in a speech bubble.

    ``source`` and ``position`` say where the message sits in its source's own order (the
    PostgreSQL plugin: ``"dback-postgres"`` and the row's ``message_id``). With both set,
    every process shows one (source, position) once, however often it arrives (a replay, a
    handover between bus publishers), and a bus can hand the next publisher the position to
    resume from (``PluginHost.resume_position``). Positions of one source grow over time.
    """

    server_id: str
    uid: str
    message: str
    channel: str = ""
    source: str | None = None
    position: int | None = None


@dataclass(frozen=True, slots=True)
class ClientIdUpdate:
    """The Discord OAuth client id of a guild changed."""

    server_id: str
    client_id: str


@dataclass(frozen=True, slots=True)
class Refresh:
    """A guild's data changed as a whole: reload it and send its viewers a new world.

    ``server_id=None`` reloads the server list (guilds added, removed, renamed).
    """

    server_id: str | None = None


Event = Presence | Message | ClientIdUpdate | Refresh
