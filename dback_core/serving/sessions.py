"""One WebSocket client from open to close: the guild list first, then each message by type.

A client message is checked (UTF-8, JSON, an object, valid text) and then handed to the
handler its ``type`` names in ``Sessions.handlers``; a type with no handler is answered with
an ``error``, like every malformed message, and the session carries on. Replies to one
client go through the fan-out, so they never overtake the broadcasts queued before them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from dback_core.plugin.ratelimit import TokenBucket
from dback_core.plugin.server_settings import Settings
from dback_core.serving.access import Access, may_view
from dback_core.wire import inputs, protocol
from dback_core.wire.addresses import client_address
from dback_core.wire.fanout import Fanout, Viewer
from dback_core.wire.limits import LogThrottle
from dback_core.world.directory import Directory

log = logging.getLogger(__name__)

#: A handler of one message type: the viewer that sent it and the whole decoded message.
MessageHandler = Callable[[Viewer, dict[str, Any]], Awaitable[None]]


def requested_server(data: dict[str, Any]) -> str:
    """The client's ``server`` field; null, missing or blank all mean the default guild."""
    value = data.get("server")
    if value is None:
        return "default"
    text = str(value).strip()
    return text or "default"


def address(connection: ServerConnection) -> str:
    remote = connection.remote_address
    return str(remote[0]) if remote else "unknown"


def forwarded_for(connection: ServerConnection) -> str | None:
    """The handshake's ``X-Forwarded-For`` (all of them, joined), or None."""
    if connection.request is None:
        return None
    values = connection.request.headers.get_all("X-Forwarded-For")
    return ", ".join(values) if values else None


class Sessions:
    """The WebSocket handler of one server and the client message types it answers."""

    def __init__(
        self, settings: Settings, directory: Directory, fanout: Fanout, access: Access
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.fanout = fanout
        self.access = access
        #: One WARNING per 10 s for clients closed for flooding: a flood of them must not
        #: become a flood of log lines.
        self.floods = LogThrottle(log)
        self.trusted_proxies = settings.proxies
        self.handlers: dict[str, MessageHandler] = {
            "connect": self.connect,
            "get_user_data": self.user_data,
        }

    async def serve(self, connection: ServerConnection) -> None:
        """Run one client's session until it closes; rate-limited per connection."""
        client = address(connection)
        counted = client_address(client, forwarded_for(connection), self.trusted_proxies)
        viewer = self.fanout.add(connection)  # drops the handshake's headers
        viewer.address = counted
        viewer.switches = TokenBucket(self.settings.switch_rate, self.settings.switch_burst)
        bucket = TokenBucket(self.settings.message_rate, self.settings.message_burst)
        log.debug("client %s connected", client)
        try:
            await connection.send(self.directory.server_list_frame)
            closing: asyncio.Task[None] | None = None
            async for raw in connection:
                if closing is not None:
                    continue  # keep reading so the close handshake can complete
                if not bucket.take():
                    self.floods.warning("closing %s: message rate limit exceeded", client)
                    closing = asyncio.create_task(
                        connection.close(1008, "message rate limit exceeded")
                    )
                    continue
                # Nothing more is read from a client that has not read what it was sent:
                # its requests wait in its own buffers, not in the server's memory.
                await connection.drain()
                await self.dispatch(viewer, raw)
        except ConnectionClosed:
            pass
        finally:
            self.fanout.remove(connection)
            log.debug("client %s disconnected", client)

    async def send(self, connection: ServerConnection, frame: str | bytes) -> None:
        """Send one frame to one client, after the broadcasts already queued for it."""
        if self.fanout.send(connection, frame):
            return  # written compressed, after the queued broadcasts
        self.fanout.flush()  # broadcasts queued before this frame go first
        with contextlib.suppress(ConnectionClosed):
            await connection.send(frame, text=True)

    def switching_too_fast(self, viewer: Viewer) -> bool:
        """Whether this ``connect`` is past the viewer's switch rate: each join may cost the
        server a large frame. (``get_user_data`` answers are cached and compressed off the
        loop the same way; only the message rate limits them.)"""
        return viewer.switches is not None and not viewer.switches.take()

    async def error(self, viewer: Viewer, message: str) -> None:
        await self.send(viewer.connection, protocol.error(message))

    async def dispatch(self, viewer: Viewer, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            # d-zone builds that send ``new Buffer(JSON.stringify(...))`` put their ``connect``
            # in a binary frame; the JSON inside is as good as a text frame's.
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                await self.error(viewer, "A binary frame must hold UTF-8 encoded JSON.")
                return
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError):
            await self.error(viewer, "Invalid JSON.")
            return
        if not isinstance(message, dict):
            await self.error(viewer, "A message must be a JSON object.")
            return
        if inputs.first_bad_text(message) is not None:
            await self.error(viewer, "Every text must be valid Unicode.")
            return
        kind = message.get("type")
        handler = self.handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            await self.error(viewer, f"Unknown message type: {kind!r}.")
            return
        await handler(viewer, message)

    async def connect(self, viewer: Viewer, message: dict[str, Any]) -> None:
        """``connect``: check its ``data``, then join the guild it names."""
        data = message.get("data")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            await self.error(viewer, "'data' must be an object.")
            return
        if "server" not in data and "server" in message:
            # ``{"type": "connect", "server": "docs"}`` is a common slip; joining the
            # default guild instead would hide it.
            data = {**data, "server": message["server"]}
        problem = inputs.connect_problem(data)
        if problem is not None:
            await self.error(viewer, problem)
            return
        if self.switching_too_fast(viewer):
            await self.error(viewer, protocol.SWITCHING_TOO_FAST)
            return
        await self.join(viewer, data)

    async def join(self, viewer: Viewer, data: dict[str, Any]) -> None:
        """Join the requested guild, or answer with an ``error``.

        A refused ``connect`` leaves the viewer where it was: the d-zone client keeps
        drawing its current world after showing the error, and that world stays live as
        long as the viewer is admitted to it (see ``Access.eject``).
        """
        info = self.directory.resolve(requested_server(data))
        if info is None:
            await self.error(viewer, protocol.UNKNOWN_SERVER)
            return
        refusal = await self.access.admit(viewer, info, data)
        if refusal is not None:
            await self.error(viewer, refusal)
            return
        guild = await self.directory.guild(info.key)
        # The list may have changed while the plugins were asked: admit under the rules in
        # force now, or the viewer would slip into a guild it was just locked out of.
        current = self.directory.servers.get(info.key)
        if guild is None or current is None:
            await self.error(viewer, protocol.UNKNOWN_SERVER)
            return
        if not may_view(viewer, current):
            await self.error(viewer, protocol.ACCESS_CHANGED)
            return
        # ``request.server`` names the guild joined, not "default" or a snowflake: the d-zone
        # client marks it in its menu and writes it into its ``?s=`` link.
        frame = guild.join_frame(current.id)
        self.fanout.move(viewer, info.key, current.id)
        await self.fanout.send_big(viewer, frame, ("join", info.key, current.id))

    async def user_data(self, viewer: Viewer, message: dict[str, Any]) -> None:
        """``get_user_data``: the members of a guild the viewer may see, without joining."""
        server_id = message.get("serverId")
        if not isinstance(server_id, str | int) or isinstance(server_id, bool):
            await self.error(viewer, "'serverId' must be a string.")
            return
        problem = inputs.text_problem(str(server_id), inputs.CLIENT_FIELD_CHARS["server"])
        if problem is not None:
            message_text = protocol.INVALID_TEXT.format(field="serverId", problem=problem)
            await self.error(viewer, message_text)
            return
        info = self.directory.resolve(str(server_id).strip() or "default")
        if info is None:
            await self.error(viewer, protocol.UNKNOWN_SERVER)
            return
        if not may_view(viewer, info):
            await self.error(viewer, protocol.LOGIN_REQUIRED)
            return
        guild = await self.directory.guild(info.key)
        users_json = guild.users_json() if guild is not None else "{}"
        frame = protocol.user_data(str(server_id), users_json).encode()
        await self.fanout.send_big(viewer, frame, ("users", info.key, str(server_id)))
