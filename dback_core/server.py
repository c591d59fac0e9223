"""The d-zone server: WebSocket sessions, plain HTTP, and the event pipeline between them.

One ``DbackServer`` owns the plugins' lifecycle, the directory of guilds, the fan-out index
and the event sources. Every change - from a plugin, the API or a refresh - goes through
``publish``: the directory applies it and returns one encoded frame, the fan-out queues that
frame for the guild's viewers. The periodic reload resends worlds through the same fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from dback_core import http, inputs, protocol, status_page
from dback_core.config import Settings
from dback_core.connections import CountedConnection, counted_connections
from dback_core.deflate import SharedDeflateFactory
from dback_core.descriptors import (
    ACCEPT_BATCH,
    AcceptErrors,
    connection_capacity,
    set_listen_backlog,
)
from dback_core.directory import Directory, Guild
from dback_core.events import Event, Refresh
from dback_core.fanout import Fanout, Viewer
from dback_core.health import FAILED
from dback_core.hooks import PluginHooks
from dback_core.host import BoundHost, PluginHost
from dback_core.limits import ConnectionCounter, LogThrottle, TokenBucket
from dback_core.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from dback_core.metrics import Metrics
from dback_core.plugins import AccessRefused, PluginRecord, PluginSet
from dback_core.records import ServerInfo
from dback_core.sources import SourceRunner
from dback_core.static import StaticFiles

log = logging.getLogger(__name__)

#: websockets' own logger for our connections. Its DEBUG records print every frame, which
#: would put passwords and OAuth tokens from ``connect`` into the logs: they are dropped.
WIRE_LOG = logging.getLogger("dback_core.websockets")
WIRE_LOG.addFilter(lambda record: record.levelno >= logging.INFO)


def _requested_server(data: dict[str, Any]) -> str:
    """The client's ``server`` field; null, missing or blank all mean the default guild."""
    value = data.get("server")
    if value is None:
        return "default"
    text = str(value).strip()
    return text or "default"


def _address(connection: ServerConnection) -> str:
    remote = connection.remote_address
    return str(remote[0]) if remote else "unknown"


def _page_response(name: str) -> Response:
    """One file of dback's own status page (``/_dback/`` itself is its index), or 404."""
    answer = status_page.asset(name or "index.html")
    if answer is None:
        return http.response(404, "Not Found")
    content_type, body = answer
    return http.response(200, body, content_type)


_CONNECT_FIELDS = {
    "server": (str, int, type(None)),
    "password": (str, type(None)),
    "discordToken": (str, type(None)),
    "discordUser": (dict, type(None)),
}


def _invalid_connect(data: dict[str, Any]) -> str | None:
    """Why a ``connect`` payload is malformed, or None when its fields have usable types
    and fit the limits in ``dback_core.inputs``."""
    for name, types in _CONNECT_FIELDS.items():
        value = data.get(name)
        if isinstance(value, bool) or not isinstance(value, types):
            return f"'{name}' has the wrong type."
    for name, limit in inputs.CLIENT_FIELD_CHARS.items():
        value = data.get(name)
        if value is not None:
            problem = inputs.text_problem(str(value), limit)
            if problem is not None:
                return protocol.INVALID_TEXT.format(field=name, problem=problem)
    user = data.get("discordUser")
    if user is not None and len(protocol.dumps(user)) > inputs.DISCORD_USER_CHARS:
        problem = f"longer than {inputs.DISCORD_USER_CHARS} characters as JSON"
        return protocol.INVALID_TEXT.format(field="discordUser", problem=problem)
    return None


class DbackServer:
    """A running dback: create, ``await start()``, ``await stop()``."""

    def __init__(
        self,
        plugins: PluginSet,
        settings: Settings | None = None,
        static_handler: http.StaticHandler | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.plugins = plugins
        self.metrics = Metrics()
        self.hooks = PluginHooks(
            plugins, timeout=self.settings.provider_timeout, metrics=self.metrics
        )
        self.directory = Directory(self.hooks, on_access_change=self._access_changed)
        self.fanout = Fanout(self.settings.max_client_buffer)
        self.sources = SourceRunner(self.publish)
        self.counter = ConnectionCounter(
            self.settings.max_connections, self.settings.max_connections_per_address
        )
        self.static_dir: Path | None = self.settings.static_dir
        self.static_files = (
            StaticFiles(self.static_dir, self.settings.static_stall_timeout)
            if self.static_dir is not None
            else None
        )
        self.accept_errors = AcceptErrors()
        self.static_handler = static_handler
        self._server: Server | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._health_refreshes: set[asyncio.Task[Any]] = set()
        self._stopped = asyncio.Event()
        self._ready = asyncio.Event()
        self._hosts: dict[str, PluginHost] = {}
        self.metrics.watch(self)
        #: Keep every listed guild loaded, viewed or not. Set by a plugin's ``startup`` when it
        #: must see events for all guilds (a bus publisher): events for unloaded guilds are
        #: dropped, and the periodic reload would otherwise evict guilds nobody watches.
        self.keep_loaded = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the plugins, load the guild list, and listen; returns once listening.

        When a step fails (the port is taken, a provider raises, the start is cancelled) what
        had been started is stopped again - event sources, the listener, and the plugins'
        ``shutdown`` - before the error propagates, so a failed start leaks nothing.
        """
        self._stopped.clear()
        if any(record.holds_others for record in self.plugins.active):
            self._set_standby(self._held_records(), True)
        try:
            await self.hooks.startup(self.settings, self, self.host_for)
            await self.directory.load_servers()
            await self._load_kept()
            self.sources.start(await self.hooks.event_sources())
            self.counter.max_total = connection_capacity(self.settings.max_connections)
            self._server = await serve(
                self._session,
                self.settings.host,
                self.settings.port,
                process_request=self._process_request,
                compression=None,  # dback's own, shared by every viewer: dback_core.deflate
                extensions=(
                    [SharedDeflateFactory()] if self.settings.compression == "deflate" else None
                ),
                max_size=self.settings.max_frame_size,
                # The handshake deadline runs from accept, on each CountedConnection instead.
                open_timeout=None,
                create_connection=counted_connections(
                    self.counter, self.settings.open_timeout, LogThrottle(log)
                ),
                ping_interval=self.settings.ping_interval,
                ping_timeout=self.settings.ping_timeout,
                origins=self.settings.origins,
                backlog=ACCEPT_BATCH,
                reuse_port=self.settings.reuse_port or None,
                logger=WIRE_LOG,
            )
            set_listen_backlog(self._server.sockets, self.settings.backlog)
            self.accept_errors.install(asyncio.get_running_loop())
            self._refresher = asyncio.create_task(self._refresh_loop(), name="dback-refresh")
        except BaseException:
            log.error("start failed; stopping the event sources and plugins it started")
            if self._server is not None:
                await self.stop()
            else:
                await self.sources.stop()
                await self.hooks.shutdown()
                self._stopped.set()
            raise
        self._ready.set()
        active = ", ".join(
            f"{record.name}-{record.version}" if record.version else record.name
            for record in self.plugins.active
        )
        log.info("plugins: %s", active or "(none)")
        log.info("serving %d guilds on ws://%s:%d", len(self.directory.servers), *self.address)

    async def __aenter__(self) -> DbackServer:
        """``async with DbackServer(...) as server:`` starts it, and stops it on leaving."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound - useful with port 0."""
        if self._server is None:
            return self.settings.host, self.settings.port
        sockname = next(iter(self._server.sockets)).getsockname()
        return sockname[0], sockname[1]

    @property
    def connections(self) -> set[ServerConnection]:
        return set(self.fanout.viewers)

    async def stop(self) -> None:
        """Stop listening, close clients with 1001, stop sources, shut the plugins down."""
        if self._server is None:
            return
        server, self._server = self._server, None
        self._ready.clear()
        for task in [self._refresher, *self._health_refreshes]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        stalled = self.fanout.drop_stalled()
        if stalled:
            log.info("aborted %d clients that stopped reading instead of closing them", stalled)
        if self.static_files is not None:
            self.static_files.abort_all()
        server.close(close_connections=True)
        await server.wait_closed()
        await self.sources.stop()
        await self.hooks.shutdown()
        self.accept_errors.uninstall()
        self._stopped.set()
        log.info("stopped")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    @property
    def ready(self) -> bool:
        """Started: the guilds are loaded and the server listens (until ``stop``)."""
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        """Return once ``ready`` (at once when it is)."""
        await self._ready.wait()

    def host_for(self, record: PluginRecord) -> PluginHost:
        """The ``PluginHost`` handle bound to the plugin of ``record``: what its hooks
        receive as ``host`` (one per plugin, kept for the server's life)."""
        host = self._hosts.get(record.name)
        if host is None:
            host = self._hosts[record.name] = BoundHost(self, record.name)
        return host

    # -- plugins held back by another ---------------------------------------------------------

    def _held_records(self) -> list[PluginRecord]:
        """Every active plugin a holder (``dback_holds_others``) decides about: all the others."""
        return [record for record in self.plugins.active if not record.holds_others]

    def _set_standby(self, records: list[PluginRecord], standby: bool) -> None:
        for record in records:
            record.standby = standby
        self.hooks.forget()

    async def release_plugins(self) -> None:
        """Start the plugins a holder kept on standby - their ``startup``, their event sources
        - and reload the guild list and the loaded guilds from them.

        Called by a plugin that sets ``dback_holds_others`` (a bus whose elected process runs
        the providers) once this process is to run them; a no-op when none are held.
        """
        released = [record for record in self._held_records() if record.standby]
        if not released:
            return
        log.info("starting plugins held on standby: %s", ", ".join(r.name for r in released))
        self._set_standby(released, False)
        await self.hooks.startup(self.settings, self, self.host_for, only=released)
        if self._server is not None:
            self.sources.start(await self.hooks.event_sources(only=released))
            await self._reload_everything()

    async def hold_plugins(self) -> None:
        """Stop the plugins a holder decides about - their event sources, their
        ``shutdown`` - and serve without them; the reverse of ``release_plugins``."""
        held = [record for record in self._held_records() if not record.standby]
        if not held:
            return
        log.info("putting plugins on standby: %s", ", ".join(r.name for r in held))
        await self.sources.stop({record.name for record in held})
        await self.hooks.shutdown(only=held)
        self._set_standby(held, True)
        if self._server is not None:
            await self._reload_everything()

    async def _reload_everything(self) -> None:
        """The guild list and every loaded guild from the plugins now serving; viewers get a
        new world only where it changed."""
        await self.refresh(None)
        for key in list(self.directory.guilds):
            await self.refresh(key, always=False)

    # -- health ----------------------------------------------------------------------------

    def report_health(self, plugin: Any, status: str, reason: str | None = None) -> None:
        """Record what ``plugin`` (its object or name) says about itself: ``serving``,
        ``unavailable`` or ``failed`` (see ``dback_core.health``), with a reason users see.

        Turning to or from ``failed`` reloads the guild list at once: a failed plugin's guilds
        leave it (their viewers are told), and come back when it serves again.
        """
        record = self.plugins.find(plugin)
        if record is None:
            raise LookupError(f"no loaded plugin is {plugin!r}")
        was_failed = record.health.status == FAILED
        if not record.health.change(record.name, status, reason):
            return
        if (was_failed or status == FAILED) and self._server is not None:
            self.hooks.forget()
            task = asyncio.create_task(self.refresh(None), name=f"dback-health-{record.name}")
            self._health_refreshes.add(task)
            task.add_done_callback(self._health_refreshes.discard)

    def readiness(self) -> dict[str, str]:
        """What holds readiness back, by plugin (or ``server``); empty when ready.

        Ready means: started, and every plugin that lists guilds has answered its first
        guild list and is serving - not waiting for a database or failed for good.
        """
        waiting: dict[str, str] = {}
        if not self.ready or not self.directory.servers_loaded:
            waiting["server"] = "starting"
        for record in self.hooks.providers():
            health = record.health
            if not health.serving:
                waiting[record.name] = f"{health.status}: {health.reason or 'no reason given'}"
            elif not health.listed:
                waiting[record.name] = "has not listed its guilds yet"
        return waiting

    # -- events ----------------------------------------------------------------------------

    async def publish(self, event: Event, origin: str | None = None, *, relay: bool = True) -> None:
        """Apply ``event`` and deliver it; ``origin`` is the plugin it came from, if any.

        With ``relay`` (the default) plugins implementing ``event_applied`` are told about it
        afterwards; a bus injecting events from other processes passes ``relay=False`` so
        that nothing is echoed back.
        """
        self.metrics.event_in(type(event).__name__)
        if isinstance(event, Refresh):
            # Plugins refresh after every reconnect; only the API's ``refresh_data`` (origin
            # None, not relayed) is an explicit request to resend an unchanged world.
            await self.refresh(event.server_id, always=origin is None and relay)
        else:
            frame = self.directory.apply(event, origin)
            if frame is None:
                return
            self.metrics.frames_out.inc(self.fanout.broadcast(event.server_id, frame))
        if relay:
            await self.hooks.event_applied(event, origin)

    async def refresh(self, server_id: str | None, *, always: bool = True) -> bool:
        """Reload a guild (or, for None, the guild list) and give its viewers a new world;
        True when the viewers were sent something.

        With ``always`` false the viewers hear of it only when the reload changed what they
        see: a provider resynchronising after a reconnect must not resend a 10,000-member
        world to every viewer when nothing happened meanwhile.

        With ``always`` (an explicit request, such as d-back's ``refresh_data``) the guild
        list is reloaded first: "the guild changed as a whole" includes its access rules,
        and a world must not be resent to viewers the new rules lock out.
        """
        if server_id is None:
            changed = await self.directory.load_servers()
            if changed:
                self.fanout.broadcast_all(self.directory.server_list_frame.encode())
            await self._load_kept()
            return changed
        if always or server_id not in self.directory.servers:
            await self.refresh(None)
        current = self.directory.guilds.get(server_id)
        if current is None:
            return False
        guild = await self.directory.load(server_id)
        if guild is None or (not always and guild.looks_like(current)):
            return False
        await self.refresh_viewers(guild)
        self.fanout.broadcast(server_id, protocol.refresh_data(server_id))
        return True

    async def _refresh_loop(self) -> None:
        """Every ``refresh_seconds``, reload the guild list and the guilds in use."""
        interval = max(self.settings.refresh_seconds, 1.0)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._reload_all()
            except Exception:
                log.exception("periodic refresh failed")

    async def _reload_all(self) -> None:
        """Reload the guild list, then every watched (or kept) guild; send a new world only
        where something changed, and report it to ``event_applied`` as a ``Refresh``, like a
        refresh an event source asked for, so that a bus can pass it on.

        A guild nobody watches is dropped instead (unless ``keep_loaded``). A watched guild
        whose first load failed was served empty and not kept; it is tried again here, so its
        viewers get their world once a provider answers.
        """
        loaded = list(self.directory.guilds.items())  # guilds the list reload adds are fresh
        if await self.refresh(None):
            await self.hooks.event_applied(Refresh(None), None)
        for key, guild in loaded:
            if not self.keep_loaded and not self.fanout.by_guild.get(key):
                self.directory.evict(key)
                continue
            await self._reload(key, guild)
        for key in [key for key in self.fanout.by_guild if key not in self.directory.guilds]:
            await self._reload(key, None)

    async def _reload(self, key: str, before: Guild | None) -> None:
        fresh = await self.directory.load(key)
        if fresh is None or self.directory.guilds.get(key) is not fresh:
            return  # no longer listed, or its providers are still failing
        if before is None or not fresh.looks_like(before):
            await self.refresh_viewers(fresh)
            await self.hooks.event_applied(Refresh(key), None)

    async def _load_kept(self) -> None:
        """With ``keep_loaded``, load every listed guild that is not loaded yet."""
        if not self.keep_loaded:
            return
        for key in list(self.directory.servers):
            if key not in self.directory.guilds:
                await self.directory.guild(key)

    async def refresh_viewers(self, guild: Guild) -> None:
        """Send every viewer of ``guild`` its world again, under the name it asked for.

        Through the fan-out, like any broadcast: no viewer is awaited, so one that stopped
        reading is cut off at its buffer limit instead of holding up the refresh and every
        event behind it. One encoded frame per requested name, not per viewer. Only to
        viewers admitted under the guild's current rules, whatever path asked for it.
        """
        info = self.directory.servers.get(guild.key)
        if info is None:
            return
        groups: dict[str, list[ServerConnection]] = {}
        for viewer in self.fanout.watchers(guild.key):
            if not self._may_view(viewer, info):
                continue
            groups.setdefault(viewer.requested or guild.info.id, []).append(viewer.connection)
        for requested, connections in groups.items():
            self.fanout.deliver(connections, guild.join_frame(requested))

    # -- access ----------------------------------------------------------------------------

    @staticmethod
    def _may_view(viewer: Viewer, info: ServerInfo) -> bool:
        """Whether ``viewer`` is admitted to ``info`` under its current rules."""
        return not info.passworded or viewer.authorized.get(info.key) == info.access

    def _access_changed(self, keys: list[str]) -> None:
        """Take every viewer out of these guilds (removed from the list, or with new access
        rules) unless it is still admitted, and tell it with an ``error``.

        Runs synchronously as the new guild list is installed, so no presence, chat or
        world of the guild can reach such a viewer afterwards. The error goes through the
        fan-out, after anything queued for the viewer before the change.
        """
        for key in keys:
            info = self.directory.servers.get(key)
            ejected = []
            for viewer in self.fanout.watchers(key):
                if info is not None and self._may_view(viewer, info):
                    continue
                viewer.authorized.pop(key, None)
                self.fanout.leave(viewer)
                ejected.append(viewer.connection)
            if not ejected:
                continue
            reason = protocol.UNKNOWN_SERVER if info is None else protocol.ACCESS_CHANGED
            self.fanout.deliver(ejected, protocol.error(reason).encode())
            log.info(
                "guild %s %s: %d viewers taken out",
                key,
                "left the list" if info is None else "changed its access rules",
                len(ejected),
            )

    # -- HTTP ------------------------------------------------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """None to open a WebSocket, else the plain HTTP answer (GET and HEAD only).

        Connection limits were applied when the socket was accepted (``connections``).
        """
        if request.method not in http.ALLOWED_METHODS:
            return http.method_not_allowed()
        if request.method == "GET" and http.is_websocket_upgrade(request):
            return None
        answer = await self._http_answer(connection, request)
        return http.without_body(answer) if request.method == "HEAD" else answer

    async def _http_answer(self, connection: ServerConnection, request: Request) -> Response:
        path = request.path.split("?", 1)[0]
        if path == http.VERSION_PATH:
            return http.version_response()
        if path == http.HEALTH_PATH:
            return http.json_response(200, {"status": "ok"})
        if path == http.READY_PATH:
            waiting = self.readiness()
            report = {"ready": not waiting, **({"waiting": waiting} if waiting else {})}
            return http.json_response(503 if waiting else 200, report)
        if path == http.METRICS_PATH:
            return http.response(200, self.metrics.render(), METRICS_CONTENT_TYPE)
        if path == http.PLUGINS_PATH:
            return http.json_response(200, self.plugins.describe())
        if path.startswith(status_page.ASSET_PREFIX):
            return _page_response(path.removeprefix(status_page.ASSET_PREFIX))
        if self.static_handler is not None:
            answer = await self.static_handler(path)
            if answer is not None:
                content_type, body = answer
                return http.response(200, body, content_type)
        if self.static_files is not None:
            assert isinstance(connection, CountedConnection)
            return await self.static_files.answer(connection, request)
        if path == "/":
            return _page_response("index.html")
        return http.response(404, "Not Found")

    # -- WebSocket sessions ----------------------------------------------------------------

    async def _session(self, connection: ServerConnection) -> None:
        address = _address(connection)
        viewer = self.fanout.add(connection)
        bucket = TokenBucket(self.settings.message_rate, self.settings.message_burst)
        log.debug("client %s connected", address)
        try:
            await connection.send(self.directory.server_list_frame)
            closing: asyncio.Task[None] | None = None
            async for raw in connection:
                if closing is not None:
                    continue  # keep reading so the close handshake can complete
                if not bucket.take():
                    log.warning("closing %s: message rate limit exceeded", address)
                    closing = asyncio.create_task(
                        connection.close(1008, "message rate limit exceeded")
                    )
                    continue
                await self._dispatch(viewer, raw)
        except ConnectionClosed:
            pass
        finally:
            self.fanout.remove(connection)
            log.debug("client %s disconnected", address)

    async def _send(self, connection: ServerConnection, frame: str | bytes) -> None:
        if self.fanout.send(connection, frame):
            return  # written compressed, after the queued broadcasts
        self.fanout.flush()  # broadcasts queued before this frame go first
        with contextlib.suppress(ConnectionClosed):
            await connection.send(frame, text=True)

    async def _dispatch(self, viewer: Viewer, raw: str | bytes) -> None:
        connection = viewer.connection
        if isinstance(raw, bytes):
            # d-zone builds that send ``new Buffer(JSON.stringify(...))`` put their ``connect``
            # in a binary frame; the JSON inside is as good as a text frame's.
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                await self._send(
                    connection, protocol.error("A binary frame must hold UTF-8 encoded JSON.")
                )
                return
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError):
            await self._send(connection, protocol.error("Invalid JSON."))
            return
        if not isinstance(message, dict):
            await self._send(connection, protocol.error("A message must be a JSON object."))
            return
        if inputs.first_bad_text(message) is not None:
            await self._send(connection, protocol.error("Every text must be valid Unicode."))
            return
        kind = message.get("type")
        if kind == "connect":
            data = message.get("data")
            if data is None:
                data = {}
            if not isinstance(data, dict):
                await self._send(connection, protocol.error("'data' must be an object."))
                return
            if "server" not in data and "server" in message:
                # ``{"type": "connect", "server": "docs"}`` is a common slip; joining the
                # default guild instead would hide it.
                data = {**data, "server": message["server"]}
            problem = _invalid_connect(data)
            if problem is not None:
                await self._send(connection, protocol.error(problem))
                return
            await self._connect(viewer, data)
        elif kind == "get_user_data":
            await self._user_data(viewer, message.get("serverId"))
        else:
            await self._send(connection, protocol.error(f"Unknown message type: {kind!r}."))

    async def _admit(self, viewer: Viewer, info: ServerInfo, data: dict[str, Any]) -> str | None:
        """None when the viewer may see ``info``, else the error to show. An admission is
        remembered with the rules it was made under (``ServerInfo.access``)."""
        if self._may_view(viewer, info):
            return None
        password = data.get("password")
        if info.password is not None and password:
            expected = info.password.encode("utf-8", "surrogatepass")
            if hmac.compare_digest(password.encode(), expected):
                viewer.authorized[info.key] = info.access
                return None
            return protocol.LOGIN_REFUSED
        credentials = {
            "password": password,
            "discordToken": data.get("discordToken"),
            "discordUser": data.get("discordUser"),
        }
        if not any(credentials.values()):
            return protocol.LOGIN_REQUIRED
        try:
            admitted = await self.hooks.authorize(info.key, info.for_plugins(), credentials)
        except AccessRefused as refusal:
            return str(refusal) or protocol.LOGIN_REFUSED
        if admitted:
            viewer.authorized[info.key] = info.access
            return None
        return protocol.LOGIN_REFUSED

    async def _connect(self, viewer: Viewer, data: dict[str, Any]) -> None:
        """Join the requested guild, or answer with an ``error``.

        A refused ``connect`` leaves the viewer where it was: the d-zone client keeps
        drawing its current world after showing the error, and that world stays live as
        long as the viewer is admitted to it (see ``_access_changed``).
        """
        requested = _requested_server(data)
        info = self.directory.resolve(requested)
        if info is None:
            await self._send(viewer.connection, protocol.error(protocol.UNKNOWN_SERVER))
            return
        refusal = await self._admit(viewer, info, data)
        if refusal is not None:
            await self._send(viewer.connection, protocol.error(refusal))
            return
        guild = await self.directory.guild(info.key)
        # The list may have changed while the plugins were asked: admit under the rules in
        # force now, or the viewer would slip into a guild it was just locked out of.
        current = self.directory.servers.get(info.key)
        if guild is None or current is None:
            await self._send(viewer.connection, protocol.error(protocol.UNKNOWN_SERVER))
            return
        if not self._may_view(viewer, current):
            await self._send(viewer.connection, protocol.error(protocol.ACCESS_CHANGED))
            return
        # ``request.server`` names the guild joined, not "default" or a snowflake: the d-zone
        # client marks it in its menu and writes it into its ``?s=`` link.
        frame = guild.join_frame(current.id)
        self.fanout.move(viewer, info.key, current.id)
        await self._send(viewer.connection, frame)

    async def _user_data(self, viewer: Viewer, server_id: Any) -> None:
        if not isinstance(server_id, str | int) or isinstance(server_id, bool):
            await self._send(viewer.connection, protocol.error("'serverId' must be a string."))
            return
        problem = inputs.text_problem(str(server_id), inputs.CLIENT_FIELD_CHARS["server"])
        if problem is not None:
            message = protocol.INVALID_TEXT.format(field="serverId", problem=problem)
            await self._send(viewer.connection, protocol.error(message))
            return
        requested = str(server_id).strip() or "default"
        info = self.directory.resolve(requested)
        if info is None:
            await self._send(viewer.connection, protocol.error(protocol.UNKNOWN_SERVER))
            return
        if not self._may_view(viewer, info):
            await self._send(viewer.connection, protocol.error(protocol.LOGIN_REQUIRED))
            return
        guild = await self.directory.guild(info.key)
        users_json = guild.users_json() if guild is not None else "{}"
        await self._send(viewer.connection, protocol.user_data(str(server_id), users_json))
