"""Helpers for testing dback and its plugins against a real server over real sockets.

Public so that plugin authors can test their plugins the way the core tests itself::

    from dback_core.testing import Client, running_server

    async with running_server(in_process=[("mine", MyPlugin())]) as server:
        async with Client(server) as client:
            world = await client.join("default")

With pytest, the ``dback`` fixture (``dback_core.pytest_plugin``, installed with
``dback-core[testing]``) wraps ``Launcher``: servers with exactly the plugins a test names,
in an environment without the developer's ``DBACK_*`` variables, stopped after the test.
A test gets a ``Served`` - where the server listens, its plugins as ``dback plugins`` lists
them and the ``PluginHost`` its plugin was given - and protocol ``Client``s, never the
server object: what a plugin's test can see is what the plugin and its users can.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import websockets

from dback_core.loading.plugins import PLUGINS_ENV, PluginSet, load_plugins
from dback_core.plugin.errors import PluginError
from dback_core.plugin.host import PluginHost
from dback_core.plugin.server_settings import Settings
from dback_core.serving.server import DbackServer

#: What every ``DBACK_*`` variable starts with: none of the shell's reach a ``Launcher``.
PREFIX = "DBACK_"


@contextlib.asynccontextmanager
async def running_server(
    in_process: Iterable[tuple[str, Any]] = (),
    environ: Mapping[str, str] | None = None,
    **settings: Any,
) -> AsyncIterator[DbackServer]:
    """Start a DbackServer on 127.0.0.1 and an ephemeral port; stop it afterwards."""
    plugins = load_plugins(environ=environ, in_process=in_process)
    server = DbackServer(plugins, Settings(host="127.0.0.1", port=0, **settings))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class Listening(Protocol):
    """Anything that says where a dback listens: a ``Served``, a ``DbackServer``."""

    @property
    def address(self) -> tuple[str, int]: ...


@dataclass(frozen=True)
class Served:
    """A server a ``Launcher`` started, as a plugin's test sees it.

    ``host`` is the ``PluginHost`` the first plugin named was given (publish as that plugin,
    read the loaded guilds, report its health), None when no plugin was named;
    ``plugins()`` is what ``dback plugins --json`` and ``/api/plugins`` show, at the moment
    it is called; ``plugin(name)`` is the loaded object whose hooks run, for a test that
    checks its own plugin's state.
    """

    address: tuple[str, int]
    host: PluginHost | None
    describe: Callable[[], dict[str, Any]]
    loaded: Callable[[str], Any]

    @property
    def url(self) -> str:
        host, port = self.address
        return f"ws://{host}:{port}"

    def plugins(self) -> dict[str, Any]:
        return self.describe()

    def plugin(self, name: str) -> Any:
        """The loaded object of plugin ``name`` (``LookupError`` when none is loaded)."""
        found = self.loaded(name)
        if found is None:
            raise LookupError(f"no plugin {name!r} is loaded")
        return found


class Client:
    """A d-zone-like WebSocket client that reads frames as JSON."""

    def __init__(self, server: Listening | str, timeout: float = 5.0, **connect_options: Any):
        if isinstance(server, str):
            self.url = server
        else:
            host, port = server.address
            self.url = f"ws://{host}:{port}"
        self.timeout = timeout
        self.connect_options = connect_options
        self.connection: Any = None
        #: The first frame's guilds, read when the client connects.
        self.server_list: dict[str, Any] = {}

    async def __aenter__(self) -> Client:
        self.connection = await websockets.connect(self.url, **self.connect_options)
        first = await self.recv()
        assert first["type"] == "server-list", first
        self.server_list = first["data"]
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.connection.close()

    async def send(self, message: Any) -> None:
        await self.connection.send(
            message if isinstance(message, str | bytes) else json.dumps(message)
        )

    async def recv(self, timeout: float | None = None) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.connection.recv(), timeout or self.timeout)
        message: dict[str, Any] = json.loads(raw)
        return message

    async def recv_type(self, *types: str, timeout: float | None = None) -> dict[str, Any]:
        """The next frame of one of ``types``, skipping others (such as mock presence)."""
        deadline = asyncio.get_running_loop().time() + (timeout or self.timeout)
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no frame of type {types} arrived")
            frame = await self.recv(remaining)
            if frame.get("type") in types:
                return frame

    async def join(self, server: Any = "default", **extra: Any) -> dict[str, Any]:
        """Send ``connect`` and return the ``server-join`` (or ``error``) frame."""
        await self.send({"type": "connect", "data": {"server": server, **extra}})
        return await self.recv_type("server-join", "error")

    async def pending(self, server_id: str) -> list[dict[str, Any]]:
        """Every frame the server queued for this client before now, without waiting for
        silence: asks for ``get_user_data`` of the open guild ``server_id`` and returns what
        arrives before the answer (the server flushes queued broadcasts before answering)."""
        await self.send({"type": "get_user_data", "serverId": server_id})
        frames = []
        while (frame := await self.recv())["type"] != "user_data":
            frames.append(frame)
        return frames

    async def wait_for(self, predicate: Any, timeout: float | None = None) -> dict[str, Any]:
        """The first frame for which ``predicate(frame)`` is true."""
        deadline = asyncio.get_running_loop().time() + (timeout or self.timeout)
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError("the expected frame did not arrive")
            frame = await self.recv(remaining)
            if predicate(frame):
                return frame


class Launcher:
    """Starts dback servers for one test and stops them (and closes their clients) after it.

    Plugins read their settings from the process environment, so ``start`` sets a test's
    variables there with ``setenv``, which must undo them after the test (the pytest fixture
    passes ``monkeypatch.setenv``, having removed the shell's ``DBACK_*`` variables first).
    """

    def __init__(self, setenv: Callable[[str, str], None]) -> None:
        self._setenv = setenv
        self._servers: list[DbackServer] = []
        self._clients: list[Client] = []

    async def start(
        self,
        *plugins: str,
        in_process: Iterable[tuple[str, Any]] = (),
        environ: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> Served:
        """A started server with exactly the installed ``plugins`` named (in that order),
        after the ``in_process`` ones, on 127.0.0.1 and a free port.

        ``environ`` sets the plugins' variables (``{"DBACK_MOCK_SEED": "7"}``); keyword
        arguments are ``Settings`` fields (``refresh_seconds=1``). A mistake ``dback serve``
        would refuse to start with - a named plugin missing, failing or not configured, a
        bad setting - raises ``PluginError`` with the same lines.
        """
        for name, value in (environ or {}).items():
            if not name.startswith(PREFIX):
                raise ValueError(f"{name}: only {PREFIX}* variables are set for a plugin")
            self._setenv(name, value)
        loaded = load_plugins(environ={PLUGINS_ENV: ",".join(plugins)}, in_process=in_process)
        _refuse(loaded.fatal_problems())
        server = DbackServer(loaded, Settings(host="127.0.0.1", port=0, **settings))
        self._servers.append(server)
        await server.start()
        _refuse(loaded.fatal_problems())  # a plugin's ``startup`` may find one too
        host = server.host_for(loaded.records[0]) if loaded.records else None
        return Served(server.address, host, loaded.describe, _plugin_object(loaded))

    async def client(self, server: Listening, **options: Any) -> Client:
        """A connected ``Client`` of ``server`` (its ``server_list`` read), closed after the
        test; ``options`` go to ``Client`` (``timeout=10``)."""
        client = Client(server, **options)
        await client.__aenter__()
        self._clients.append(client)
        return client

    async def close(self) -> None:
        """Close every client, then stop every server, newest first."""
        for client in reversed(self._clients):
            await client.__aexit__(None, None, None)
        for server in reversed(self._servers):
            await server.stop()
        self._clients.clear()
        self._servers.clear()


def _plugin_object(plugins: PluginSet) -> Callable[[str], Any]:
    def find(name: str) -> Any:
        record = plugins.find(name)
        return record.plugin if record is not None and record.is_active else None

    return find


def _refuse(problems: list[str]) -> None:
    if problems:
        raise PluginError("\n".join(problems))
