"""Encoding the frames of the d-zone protocol (see PROTOCOL.md in the project docs).

Frames are built here and nowhere else, so the wire format is easy to audit. Broadcast
frames are encoded once, as UTF-8 bytes, and the same bytes go to every viewer.
"""

from __future__ import annotations

import json
from typing import Any

UNKNOWN_SERVER = "Sorry, couldn't connect to that Discord server."
LOGIN_REQUIRED = "This server requires Discord authentication. Please login with Discord."
LOGIN_REFUSED = "Discord authentication failed. Please try logging in again."
#: Sent to a viewer taken out of a guild whose access rules changed under it (it turned
#: passworded, its password or login changed): the old admission no longer counts.
ACCESS_CHANGED = "Access to this Discord server has changed. Please log in again."
#: Sent for a ``connect`` or ``get_user_data`` past the client's switch rate
#: (``DBACK_SWITCH_RATE``); the request is ignored and the viewer stays where it was.
SWITCHING_TOO_FAST = "Too many guild switches. Please wait a moment and try again."
#: Sent for a client field that is too long or not valid Unicode text.
INVALID_TEXT = "'{field}' is {problem}."


def dumps(value: Any) -> str:
    """Compact JSON; non-ASCII names stay readable and small."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def frame(message_type: str, data: Any, server: str | None = None) -> str:
    message: dict[str, Any] = {"type": message_type}
    if server is not None:
        message["server"] = server
    message["data"] = data
    return dumps(message)


def error(message: str) -> str:
    return frame("error", {"message": message})


def server_list(servers: dict[str, dict[str, Any]]) -> str:
    return frame("server-list", servers)


def server_join(requested: str, users_json: str, server_name: str, client_id: str | None) -> str:
    """The join frame, spliced from a users map already encoded once for the guild."""
    tail = f',"clientId":{dumps(client_id)}' if client_id else ""
    return (
        '{"type":"server-join","data":{"request":'
        + dumps({"server": requested})
        + ',"users":'
        + users_json
        + ',"serverName":'
        + dumps(server_name)
        + tail
        + "}}"
    )


def user_data(server_id: str, users_json: str) -> str:
    return '{"type":"user_data","serverId":' + dumps(server_id) + ',"users":' + users_json + "}"


def presence(server: str, user: dict[str, Any], delete: bool = False) -> bytes:
    data = dict(user)
    if delete:
        data["delete"] = True
    return frame("presence", data, server).encode()


def message(server: str, uid: str, text: str, channel: str) -> bytes:
    return frame("message", {"uid": uid, "message": text, "channel": channel}, server).encode()


def client_id_update(server: str, client_id: str) -> bytes:
    return frame("update-clientid", {"clientId": client_id}, server).encode()


def refresh_data(server_id: str) -> bytes:
    return dumps({"type": "refresh_data", "serverId": server_id}).encode()
