"""Helpers shared by the PostgreSQL plugin's tests (imported by name: this directory is on
sys.path while its tests run). ``dsn_for`` and ``seed_guild`` live in
``tests.support.postgres_database``, shared with the Redis plugin's tests and the soak."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import select
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

from dback_core.serving.server import DbackServer
from dback_core.testing import Client, Served, running_server
from tests.support.postgres_database import dsn_for as dsn_for
from tests.support.postgres_database import seed_guild as seed_guild
from tests.support.postgres_passwords import ADMIN_DSN as ADMIN_DSN
from tests.support.postgres_passwords import dsn_as as dsn_as
from tests.support.postgres_passwords import password_required as password_required


async def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> None:
    """Poll ``predicate`` (sync or async) until true; fail after a generous timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition did not become true in time")
        await asyncio.sleep(interval)


def presence_of(uid: str, **expected):
    """A ``Client.wait_for`` predicate: a presence frame for ``uid`` with these fields."""

    def match(frame: dict) -> bool:
        if frame.get("type") != "presence" or frame["data"].get("uid") != uid:
            return False
        return all(frame["data"].get(key) == value for key, value in expected.items())

    return match


def postgres_plugin(server):
    """The plugin instance a running server loaded: a ``DbackServer`` of ``running_server``,
    or the ``Served`` of the ``dback`` fixture."""
    if isinstance(server, Served):
        return server.plugin("dback-postgres")
    return next(r.plugin for r in server.plugins.active if r.name == "dback-postgres")


async def listening(server, timeout: float = 10.0) -> None:
    """Wait until the server's plugin delivers every change (LISTEN on, resync applied)."""
    plugin = postgres_plugin(server)
    await wait_until(lambda: plugin.listener.listening, timeout)


@contextlib.asynccontextmanager
async def joined(guild: str) -> AsyncIterator[tuple[DbackServer, Client]]:
    """A dback with the installed plugin, delivering every change, and a client that joined
    ``guild``: where most live tests start."""
    async with running_server() as server:
        await listening(server)
        async with Client(server) as client:
            await client.join(guild)
            yield server, client


def run_dback(*arguments: str, dsn: str | None, stdin: str | None = None):
    """The installed ``dback`` command line, in a child process with its own environment."""
    env = {"PATH": "/usr/bin:/bin", "DBACK_PLUGINS": "dback-postgres"}
    if dsn is not None:
        env["DBACK_POSTGRES_DSN"] = dsn
    return subprocess.run(
        [sys.executable, "-m", "dback_core", *arguments],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=60,
    )


def run_dback_in_terminal(
    *arguments: str, dsn: str, answers: list[tuple[str, str]]
) -> tuple[int, str]:
    """The installed ``dback`` command line on a terminal of its own (a pseudo-terminal as
    its standard input and output), as a person runs it: each ``(prompt, line)`` of
    ``answers`` is typed once ``prompt`` has appeared. Returns the exit code and everything
    the terminal showed."""
    env = {"PATH": "/usr/bin:/bin", "DBACK_PLUGINS": "dback-postgres", "DBACK_POSTGRES_DSN": dsn}
    terminal, its_side = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "dback_core", *arguments],
        stdin=its_side,
        stdout=its_side,
        stderr=its_side,
        env=env,
        start_new_session=True,  # no other controlling terminal: this one is the user's
    )
    os.close(its_side)
    shown = ""
    try:
        for prompt, line in answers:
            start = len(shown)
            while prompt not in shown[start:]:
                shown += _read_terminal(terminal)
            os.write(terminal, f"{line}\n".encode())
        while chunk := _read_terminal(terminal):
            shown += chunk
        return process.wait(timeout=60), shown
    finally:
        os.close(terminal)
        if process.poll() is None:
            process.kill()
            process.wait()


def _read_terminal(terminal: int) -> str:
    """What the terminal shows next ("" once the command has closed it)."""
    ready, _, _ = select.select([terminal], [], [], 60)
    if not ready:
        raise TimeoutError("the command showed nothing for 60 s")
    try:
        return os.read(terminal, 4096).decode()
    except OSError:  # EIO: the command exited and its side of the terminal is closed
        return ""


async def http_status(server, path: str) -> int:
    """The HTTP status a plain GET of ``path`` gets from a running server."""
    host, port = server.address

    def get() -> int:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    return await asyncio.to_thread(get)


class Serving:
    """The real ``dback serve`` in a child process with only this plugin, against ``dsn``:
    its log as it comes, its HTTP side, stopped with SIGTERM. ``log`` is everything it
    wrote once stopped."""

    def __init__(self, dsn: str, **settings: str) -> None:
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DBACK_PLUGINS": "dback-postgres",
            "DBACK_POSTGRES_DSN": dsn,
            **settings,
        }
        self.lines: list[str] = []
        self.port = 0
        self._arrived = asyncio.Event()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    async def __aenter__(self) -> Serving:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dback_core",
            "serve",
            "--port",
            "0",
            env=self.env,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        line = await self.wait_for_line(r"serving \d+ guilds on ws://")
        self.port = int(line.rsplit(":", 1)[1])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.process.returncode is None:
            self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            await self._reader
            raise AssertionError(f"dback serve did not stop on SIGTERM:\n{self.log}") from None
        await self._reader

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode())
            self._arrived.set()

    async def wait_for_line(self, pattern: str, after: int = 0, timeout: float = 30.0) -> str:
        """The first log line from number ``after`` on that matches ``pattern``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for line in self.lines[after:]:
                if re.search(pattern, line):
                    return line
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or self.process.returncode is not None:
                raise AssertionError(f"no line matching {pattern!r} in:\n{self.log}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def get(self, path: str) -> tuple[int, dict]:
        """The status and JSON body of a GET of ``path``."""

        def fetch() -> tuple[int, dict]:
            url = f"http://127.0.0.1:{self.port}{path}"
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        return await asyncio.to_thread(fetch)

    async def plugin(self) -> dict:
        """What ``/api/plugins`` says of this plugin."""
        _status, described = await self.get("/api/plugins")
        return next(entry for entry in described["plugins"] if entry["name"] == "dback-postgres")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"
