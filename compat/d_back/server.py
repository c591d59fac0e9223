"""``from d_back.server import WebSocketServer``: d-back's programming interface, as a thin
layer over dback's plugin machinery.

Code written for d-back (``WebSocketServer``, ``on_get_user_data``, ``broadcast_presence``
...) runs unchanged. Each registered callback becomes a hook of one in-process plugin placed
first in the plugin order, so it replaces the installed plugins' answer to that hook exactly
as a d-back callback replaces the mock data.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from websockets.asyncio.server import ServerConnection

from dback_core.loading.plugins import load_plugins
from dback_core.plugin.events import ClientIdUpdate, Message, Presence, Refresh
from dback_core.plugin.hookspecs import hookimpl
from dback_core.plugin.server_settings import Settings
from dback_core.serving.server import DbackServer

log = logging.getLogger(__name__)

CALLBACK_PLUGIN = "websocketserver-callbacks"


class WebSocketServer:
    """A d-back compatible server: register callbacks, ``await start()``, broadcast."""

    def __init__(self, port: int = 3000, host: str = "localhost", **settings: Any) -> None:
        self.port = port
        self.host = host
        self.static_dir: Path | None = None
        self._settings_overrides = settings
        self._callbacks: dict[str, Callable[..., Any]] = {}
        self._static_request: Callable[[str], Awaitable[Any]] | None = None
        self._server: DbackServer | None = None

    # -- callbacks (d-back names and signatures) -------------------------------------------

    def on_get_server_data(self, callback: Callable[..., Any]) -> None:
        """``callback()`` -> guilds keyed by snowflake; replaces the plugins' guild lists."""
        self._callbacks["get_server_data"] = callback

    def on_get_user_data(self, callback: Callable[[str], Any]) -> None:
        """``callback(server_id)`` -> members keyed by uid; asked before any plugin."""
        self._callbacks["get_user_data"] = callback

    def on_validate_discord_user(self, callback: Callable[[str, dict[str, Any], str], Any]) -> None:
        """``callback(token, user_info, server_id)`` -> bool, for passworded guilds."""
        self._callbacks["authorize"] = callback

    def on_get_client_id(self, callback: Callable[[str], Any]) -> None:
        """``callback(server_id)`` -> the guild's Discord OAuth client id."""
        self._callbacks["get_client_id"] = callback

    def on_static_request(self, callback: Callable[[str], Awaitable[Any]]) -> None:
        """``callback(path)`` -> ``(content_type, body)`` or None to fall through."""
        self._static_request = callback

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start serving; returns as soon as the server listens."""
        if self._server is not None:
            return
        settings = Settings.from_env(
            host=self.host,
            port=self.port,
            static_dir=Path(self.static_dir) if self.static_dir else None,
            **self._settings_overrides,
        )
        # Without a callback there is nothing to put first: an empty plugin would only earn
        # its user a warning that it "implements no hooks".
        callbacks = [(CALLBACK_PLUGIN, self._callback_plugin())] if self._callbacks else []
        plugins = load_plugins(in_process=callbacks)
        server = DbackServer(plugins, settings, static_handler=self._static_request)
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()

    async def run_forever(self) -> None:
        """Start if needed and serve until ``stop()`` is called or the task is cancelled."""
        await self.start()
        server = self._server
        assert server is not None
        try:
            await server.wait_stopped()
        except asyncio.CancelledError:
            await self.stop()
            raise

    @property
    def connections(self) -> set[ServerConnection]:
        return self._server.connections if self._server is not None else set()

    @property
    def server(self) -> DbackServer | None:
        """The running dback server, for code that wants more than the d-back API."""
        return self._server

    # -- broadcasts ------------------------------------------------------------------------

    async def broadcast_presence(
        self,
        server: str,
        uid: str,
        status: str,
        username: str | None = None,
        role_color: str | None = None,
        delete: bool = False,
    ) -> None:
        await self._publish(Presence(str(server), str(uid), status, username, role_color, delete))

    async def broadcast_message(self, *args: Any, **kwargs: Any) -> None:
        """d-back's ``(server, uid, message, channel)``, or a raw dict such as the seed's
        ``{"type": "refresh_data", "serverId": ...}`` which reloads that guild."""
        if len(args) == 1 and not kwargs and isinstance(args[0], dict):
            await self._raw_message(args[0])
            return
        names = ("server", "uid", "message", "channel")
        values = dict(zip(names, args, strict=False)) | kwargs
        await self._publish(
            Message(
                str(values["server"]),
                str(values["uid"]),
                str(values["message"]),
                str(values.get("channel", "")),
            )
        )

    async def broadcast_client_id_update(self, server: str, client_id: str) -> None:
        await self._publish(ClientIdUpdate(str(server), str(client_id)))

    async def _raw_message(self, message: dict[str, Any]) -> None:
        if message.get("type") == "refresh_data":
            server_id = message.get("serverId")
            await self._publish(Refresh(str(server_id) if server_id is not None else None))
            return
        raise ValueError(
            "broadcast_message takes (server, uid, message, channel) or "
            "{'type': 'refresh_data', 'serverId': ...}"
        )

    async def _publish(self, event: Any) -> None:
        if self._server is None:
            log.warning("broadcast before start() is ignored: %r", event)
            return
        await self._server.publish(event)

    # -- the in-process plugin -------------------------------------------------------------

    def _callback_plugin(self) -> SimpleNamespace:
        """An object implementing exactly the hooks that have a registered callback."""
        callbacks = self._callbacks
        plugin = SimpleNamespace()

        if "get_server_data" in callbacks:

            @hookimpl
            def get_server_data() -> Any:
                return callbacks["get_server_data"]()

            plugin.get_server_data = get_server_data

        if "get_user_data" in callbacks:

            @hookimpl
            def get_user_data(server_id: str) -> Any:
                return callbacks["get_user_data"](server_id)

            plugin.get_user_data = get_user_data

        if "authorize" in callbacks:

            @hookimpl
            def authorize(server_id: str, credentials: dict[str, Any]) -> Awaitable[bool] | None:
                token = credentials.get("discordToken")
                if not token:
                    return None
                return _as_bool(
                    callbacks["authorize"](token, credentials.get("discordUser") or {}, server_id)
                )

            plugin.authorize = authorize

        if "get_client_id" in callbacks:

            @hookimpl
            def get_client_id(server_id: str) -> Any:
                return callbacks["get_client_id"](server_id)

            plugin.get_client_id = get_client_id

        return plugin


async def _as_bool(result: Any) -> bool:
    if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
        result = await result
    return bool(result)
