"""The d-zone server: its lifecycle and the event pipeline between plugins and viewers.

One ``DbackServer`` owns the plugins' lifecycle, the directory of guilds, the fan-out index
and the event sources. Every change - from a plugin, the API or a refresh - goes through
``publish``: the directory applies it and returns one encoded frame, the fan-out queues that
frame for the guild's viewers. The rest has a module each: WebSocket sessions and their
message types (``sessions``), plain HTTP (``routes``), admission (``access``) and the
periodic reload (``reloader``), which resends worlds through the same fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

from dback_core.loading.hooks import PluginHooks
from dback_core.loading.plugins import PluginRecord, PluginSet
from dback_core.plugin.events import Event, Message, Refresh
from dback_core.plugin.health import FAILED
from dback_core.plugin.host import PluginHost
from dback_core.plugin.server_settings import Settings
from dback_core.serving.access import Access, may_view
from dback_core.serving.bound_host import BoundHost
from dback_core.serving.guessing import GuessThrottle
from dback_core.serving.metrics import Metrics, Watched
from dback_core.serving.reloader import Reloader, ReloadInputs, reload_periodically
from dback_core.serving.routes import Routes
from dback_core.serving.sessions import Sessions
from dback_core.wire import http, protocol
from dback_core.wire.connections import counted_connections
from dback_core.wire.deflate import SharedDeflateFactory
from dback_core.wire.descriptors import (
    ACCEPT_BATCH,
    AcceptErrors,
    connection_capacity,
    set_listen_backlog,
)
from dback_core.wire.fanout import Fanout
from dback_core.wire.limits import ConnectionCounter, LogThrottle
from dback_core.wire.static import StaticFiles
from dback_core.world.chat_ledger import ChatLedger
from dback_core.world.directory import Directory, Guild
from dback_core.world.sources import SourceRunner

log = logging.getLogger(__name__)

#: websockets' own logger for our connections. Its DEBUG records print every frame, which
#: would put passwords and OAuth tokens from ``connect`` into the logs: they are dropped.
WIRE_LOG = logging.getLogger("dback_core.websockets")
WIRE_LOG.addFilter(lambda record: record.levelno >= logging.INFO)


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
        self.fanout = Fanout(
            self.settings.max_client_buffer, join_cache_bytes=self.settings.join_cache_bytes
        )
        self.access = Access(
            self.fanout,
            self.hooks,
            lambda: self.directory.servers,
            GuessThrottle(self.settings.password_lockout_after, self.settings.password_lockout),
        )
        self.directory = Directory(self.hooks, on_access_change=self.access.eject)
        self.sessions = Sessions(self.settings, self.directory, self.fanout, self.access)
        self.reloader = Reloader(
            ReloadInputs(
                directory=self.directory,
                fanout=self.fanout,
                refresh=self.refresh,
                refresh_viewers=self.refresh_viewers,
                event_applied=self.hooks.event_applied,
                keep_loaded=lambda: self.keep_loaded,
            )
        )
        self.sources = SourceRunner(self.publish)
        #: The chat shown here by source position: each shown once, and where providers resume.
        self.chat = ChatLedger()
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
        self.routes = Routes(
            describe_plugins=plugins.describe,
            readiness=self.readiness,
            metrics=self.metrics,
            static_handler=static_handler,
            static_files=self.static_files,
        )
        self._server: Server | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._health_refreshes: set[asyncio.Task[Any]] = set()
        self._stopped = asyncio.Event()
        self._ready = asyncio.Event()
        self._hosts: dict[str, PluginHost] = {}
        #: Plugins silenced by a holder and not yet stopped: their events are dropped.
        self._silenced: set[str] = set()
        self.metrics.watch(
            Watched(self.fanout, lambda: len(self.directory.servers), self.readiness, plugins)
        )
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
            await self.hooks.startup(self.settings, self.host_for)
            await self.directory.load_servers()
            await self._load_kept()
            self.sources.start(await self.hooks.event_sources())
            self.counter.max_total = connection_capacity(
                self.settings.max_connections,
                chosen=self.settings.max_connections != Settings.max_connections,
            )
            self._server = await serve(
                self.sessions.serve,
                self.settings.host,
                self.settings.port,
                process_request=self.routes.process_request,
                compression=None,  # dback's own, shared by every viewer: dback_core.wire.deflate
                extensions=(
                    [SharedDeflateFactory()] if self.settings.compression == "deflate" else None
                ),
                max_size=self.settings.max_frame_size,
                # The handshake deadline runs from accept, on each CountedConnection instead.
                open_timeout=None,
                create_connection=counted_connections(
                    self.counter,
                    self.settings.open_timeout,
                    LogThrottle(log),
                    max_lag=self.settings.max_client_lag,
                    on_lag=self.fanout.cut_slow,
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
            self._refresher = asyncio.create_task(
                reload_periodically(self.settings.refresh_seconds, self.reloader.reload_all),
                name="dback-refresh",
            )
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
        self.fanout.joins.close()
        await self.sources.stop()
        await self.hooks.shutdown()
        silenced = [record for record in self._held_records() if record.name in self._silenced]
        if silenced:  # silenced by their holder, not stopped yet: on standby, but running
            self._silenced.clear()
            await self.hooks.shutdown(only=silenced)
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
            host = self._hosts[record.name] = BoundHost(
                self, self.directory, self.access, record.name
            )
        return host

    # -- plugins held back by another ---------------------------------------------------------

    def _held_records(self) -> list[PluginRecord]:
        """Every active plugin a holder (``dback_holds_others``) decides about: all the others."""
        return [record for record in self.plugins.active if not record.holds_others]

    def _set_standby(self, records: list[PluginRecord], standby: bool) -> None:
        for record in records:
            record.standby = standby
        self.hooks.forget()

    async def release_plugins(self, resume: Mapping[str, int] | None = None) -> None:
        """Start the plugins a holder kept on standby - their ``startup``, their event sources
        - and reload the guild list and the loaded guilds from them.

        Called by a plugin that sets ``dback_holds_others`` (a bus whose elected process runs
        the providers) once this process is to run them; a no-op when none are held.
        ``resume`` gives, per chat source, the position up to which chat was delivered
        already (by the previous publisher): the providers resume after it.
        """
        if self._silenced:
            await self.hold_plugins()  # silenced plugins are stopped before they start again
        if resume:
            self.chat.resume(resume)
        released = [record for record in self._held_records() if record.standby]
        if not released:
            return
        log.info("starting plugins held on standby: %s", ", ".join(r.name for r in released))
        self._set_standby(released, False)
        await self.hooks.startup(self.settings, self.host_for, only=released)
        if self._server is not None:
            self.sources.start(await self.hooks.event_sources(only=released))
            await self.refresh_everything()

    def silence_plugins(self) -> None:
        """Drop every event of the plugins a holder decides about from now on, and stop
        asking them (on standby at once); ``hold_plugins`` then stops them.

        Synchronous, so a holder that must go quiet at once - a publisher whose lease ran
        out - is quiet before anything else runs, whatever stopping the plugins then takes.
        """
        silenced = [record for record in self._held_records() if not record.standby]
        if not silenced:
            return
        log.info("silencing plugins: %s", ", ".join(r.name for r in silenced))
        self._silenced.update(record.name for record in silenced)
        self._set_standby(silenced, True)

    async def hold_plugins(self) -> None:
        """Stop the plugins a holder decides about - their event sources, their
        ``shutdown`` - and serve without them; the reverse of ``release_plugins``.

        They are silenced first (``silence_plugins``); a source that does not end soon
        after its cancellation is abandoned (see ``SourceRunner.stop``), and each
        ``shutdown`` is bounded like every hook call.
        """
        self.silence_plugins()
        held = [record for record in self._held_records() if record.name in self._silenced]
        if not held:
            return
        log.info("putting plugins on standby: %s", ", ".join(r.name for r in held))
        try:
            await self.sources.stop({record.name for record in held})
            await self.hooks.shutdown(only=held)
        finally:
            self._silenced.difference_update(record.name for record in held)
        if self._server is not None:
            await self.refresh_everything()

    async def refresh_everything(self) -> None:
        """Reload the guild list and every loaded guild from the plugins now serving; viewers
        get a new world only where it changed (after plugins were released or held, or a bus
        reconnected). A guild viewers watch that is not loaded - served empty because its
        providers failed as they joined - is loaded too: nothing else would load it until
        the next viewer joins, and its chat would go nowhere until then."""
        await self.refresh(None)
        unloaded = [key for key in self.fanout.by_guild if key not in self.directory.guilds]
        for key in [*self.directory.guilds, *unloaded]:
            await self.refresh(key, always=False)

    # -- health ----------------------------------------------------------------------------

    def report_health(self, plugin: Any, status: str, reason: str | None = None) -> None:
        """Record what ``plugin`` (its object or name) says about itself: ``serving``,
        ``unavailable`` or ``failed`` (see ``dback_core.plugin.health``), with a reason users see.

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

    def chat_lost(self, plugin: str, count: int, reason: str) -> None:
        """Count and log chat that ``plugin`` could not deliver (see ``PluginHost.chat_lost``)."""
        if count <= 0:
            return
        self.metrics.chat_lost.labels(plugin, reason).inc(count)
        log.warning("plugin %s: %d chat messages lost: %s", plugin, count, reason)

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
        if origin is not None and origin in self._silenced:
            log.debug("dropped an event of %s, silenced by its holder", origin)
            return
        self.metrics.event_in(type(event).__name__)
        if isinstance(event, Message) and not self.chat.admit(event):
            self.metrics.chat_duplicates.inc()
            return
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
        if current is None and server_id not in self.fanout.by_guild:
            return False
        # Not loaded but watched: its load failed when a viewer joined (the providers out of
        # reach), and the viewers were served it empty; load it now.
        guild = await self.directory.load(server_id)
        if guild is None or self.directory.guilds.get(server_id) is not guild:
            return False  # the load failed again: the viewers keep what they have
        if current is not None and not always and guild.looks_like(current):
            return False
        await self.refresh_viewers(guild)
        self.fanout.broadcast(server_id, protocol.refresh_data(server_id))
        return True

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
            if not may_view(viewer, info):
                continue
            groups.setdefault(viewer.requested or guild.info.id, []).append(viewer.connection)
        for requested, connections in groups.items():
            self.fanout.deliver(connections, guild.join_frame(requested))
