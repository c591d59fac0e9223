"""The bus's wire format: one JSON object per event, tagged with sender and sequence number.

``{"v": 1, "from": <process id>, "seq": <n>, "kind": "presence", ...fields}``. The sender
lets a process ignore its own messages; the per-sender sequence lets a process drop
duplicates and notice a gap (then it resynchronises). ``resync`` is a control message: the
publisher rewrote the whole snapshot, reload everything from it. Messages from an edge (its
own d-back API broadcasts) carry ``"role": "edge"``: the publisher writes their change into
the snapshot, which it alone keeps. An elected publisher's messages carry ``"fence"``, its
lease number: once a process has seen a fence, it ignores publishers with a lower one.
Chat that carries its source's position (``Message.source``, ``position``) carries both, so
every process shows it once and the publisher can record how far each source got.
``released`` (``seq`` 0, outside any sequence) is the word of a publisher that stopped and
gave the lease up: the others run for election at once instead of at their next turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dback_core.plugin.events import ClientIdUpdate, Event, Message, Presence, Refresh

VERSION = 1
RESYNC = "resync"
RELEASED = "released"
EDGE_ROLE = "edge"


class BadMessage(ValueError):
    """A bus message that is not valid JSON or not a well-formed event."""


@dataclass(frozen=True)
class Envelope:
    """One decoded bus message: who sent it, its sequence number, and the event (None:
    a ``resync`` control message)."""

    sender: str
    seq: int
    event: Event | None
    from_edge: bool = False
    #: The publisher's lease number (elected publishers only): a higher one means a newer
    #: publisher, and messages of older ones are ignored.
    fence: int | None = None
    #: A ``released`` notice: the sender gave the publisher lease up.
    released: bool = False


def _fields(event: Event) -> dict[str, Any]:
    if isinstance(event, Presence):
        return {
            "kind": "presence",
            "server_id": event.server_id,
            "uid": event.uid,
            "status": event.status,
            "username": event.username,
            "role_color": event.role_color,
            "delete": event.delete,
        }
    if isinstance(event, Message):
        return {
            "kind": "message",
            "server_id": event.server_id,
            "uid": event.uid,
            "message": event.message,
            "channel": event.channel,
            **({"source": event.source} if event.source is not None else {}),
            **({"position": event.position} if event.position is not None else {}),
        }
    if isinstance(event, ClientIdUpdate):
        return {"kind": "client_id", "server_id": event.server_id, "client_id": event.client_id}
    if isinstance(event, Refresh):
        return {"kind": "refresh", "server_id": event.server_id}
    raise TypeError(f"not a dback event: {event!r}")


def encode(
    event: Event | None,
    sender: str,
    seq: int,
    from_edge: bool = False,
    fence: int | None = None,
) -> str:
    """The bus message for ``event`` (None: ``resync``)."""
    body = {"kind": RESYNC} if event is None else _fields(event)
    head: dict[str, Any] = {"v": VERSION, "from": sender, "seq": seq}
    if from_edge:
        head["role"] = EDGE_ROLE
    if fence is not None:
        head["fence"] = fence
    return json.dumps({**head, **body}, separators=(",", ":"))


def encode_released(sender: str, fence: int | None) -> str:
    """The notice of a publisher that gave the lease up."""
    head: dict[str, Any] = {"v": VERSION, "from": sender, "seq": 0, "kind": RELEASED}
    if fence is not None:
        head["fence"] = fence
    return json.dumps(head, separators=(",", ":"))


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise BadMessage(f"'{name}' must be a string")
    return value


def _optional_text(data: dict[str, Any], name: str) -> str | None:
    return None if data.get(name) is None else _text(data, name)


def _event(data: dict[str, Any]) -> Event | None:
    kind = data.get("kind")
    if kind in (RESYNC, RELEASED):
        return None
    if kind == "presence":
        color = data.get("role_color")
        if color is not None and color is not False and not isinstance(color, str):
            raise BadMessage("'role_color' must be a string, false or null")
        return Presence(
            server_id=_text(data, "server_id"),
            uid=_text(data, "uid"),
            status=_text(data, "status"),
            username=_optional_text(data, "username"),
            role_color=color,
            delete=data.get("delete") is True,
        )
    if kind == "message":
        position = data.get("position")
        if position is not None and (not isinstance(position, int) or isinstance(position, bool)):
            raise BadMessage("'position' must be an integer")
        return Message(
            server_id=_text(data, "server_id"),
            uid=_text(data, "uid"),
            message=_text(data, "message"),
            channel=_optional_text(data, "channel") or "",
            source=_optional_text(data, "source"),
            position=position,
        )
    if kind == "client_id":
        return ClientIdUpdate(_text(data, "server_id"), _text(data, "client_id"))
    if kind == "refresh":
        return Refresh(_optional_text(data, "server_id"))
    raise BadMessage(f"unknown kind {kind!r}")


def decode(raw: str | bytes) -> Envelope:
    """Parse one bus message; raises ``BadMessage`` for anything malformed."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise BadMessage(f"not JSON: {error}") from error
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise BadMessage("not a version 1 bus message")
    seq = data.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise BadMessage("'seq' must be an integer")
    fence = data.get("fence")
    if fence is not None and (not isinstance(fence, int) or isinstance(fence, bool)):
        raise BadMessage("'fence' must be an integer")
    return Envelope(
        sender=_text(data, "from"),
        seq=seq,
        event=_event(data),
        from_edge=data.get("role") == EDGE_ROLE,
        fence=fence,
        released=data.get("kind") == RELEASED,
    )
