"""Everything an operator - or anyone who reaches the port - can read from a running dback:
its HTTP answers, its status page as a browser renders it, ``dback plugins`` (table and
JSON) and ``dback serve --help`` in the same environment, and its log. The secrets and
log-forgery tests search all of it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, quote_plus

from playwright.async_api import async_playwright

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.http_get import get

BIN = Path(sys.executable).parent
#: The plain HTTP paths whose answers are searched.
PATHS = ("/api/plugins", "/metrics", "/readyz", "/healthz", "/api/version", "/")


def environment(**settings: str) -> dict[str, str]:
    """This process's environment without any ``DBACK_*`` variable, plus ``settings``."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith("DBACK_")}
    return {**kept, **settings}


class Dback:
    """A real ``dback serve`` (or ``command``) in a child process with text or JSON logs:
    the port from its "serving ... on ws://" line, every log line it writes, stopped with
    SIGTERM on leaving."""

    def __init__(self, env: Mapping[str, str], command: Sequence[str] | None = None) -> None:
        self.env = dict(env)
        self.command = list(command or [sys.executable, "-m", "dback_core", "serve"])
        self.lines: list[str] = []
        self.port = 0
        self._arrived = asyncio.Event()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    async def __aenter__(self) -> Dback:
        self.process = await asyncio.create_subprocess_exec(
            *self.command, "--port", "0", env=self.env, stderr=asyncio.subprocess.PIPE
        )
        self._reader = asyncio.create_task(self._read())
        line = await self.wait_for_line(r"serving \d+ guilds on ws://")
        self.port = int(re.search(r":(\d+)", line.rsplit("ws://", 1)[1])[1])  # type: ignore[index]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        await self._reader

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode(errors="backslashreplace"))
            self._arrived.set()

    async def wait_for_line(self, pattern: str, timeout: float = 30.0) -> str:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for line in self.lines:
                if re.search(pattern, line):
                    return line
            remaining = deadline - asyncio.get_running_loop().time()
            assert remaining > 0 and self.process.returncode is None, (
                f"no line matching {pattern!r} in:\n{self.log}"
            )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def plugin(self, name: str) -> dict:
        """What ``/api/plugins`` says of plugin ``name``."""
        answer = await asyncio.to_thread(get, self.port, "/api/plugins")
        described = json.loads(answer.body)
        return next(entry for entry in described["plugins"] if entry["name"] == name)

    async def until_status(self, name: str, status: str, timeout: float = 30.0) -> dict:
        """Wait until plugin ``name`` shows ``status``; what ``/api/plugins`` says of it."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            entry = await self.plugin(name)
            if entry["status"] == status:
                return entry
            assert asyncio.get_running_loop().time() < deadline, (entry, self.log)
            await asyncio.sleep(0.2)

    async def until_ready(self, timeout: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while (await asyncio.to_thread(get, self.port, "/readyz")).status != 200:
            assert asyncio.get_running_loop().time() < deadline, self.log
            await asyncio.sleep(0.2)


async def rendered_status_page(port: int) -> str:
    """The status page as chromium shows it once its plugin list arrived: the visible text
    and the document's HTML."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.wait_for_selector("#plugins li", state="attached", timeout=15_000)
            return await page.inner_text("body") + "\n" + await page.content()
        finally:
            await browser.close()


def run_dback(env: Mapping[str, str], *arguments: str) -> str:
    """What ``dback ARGUMENTS`` prints, standard output and error together."""
    done = subprocess.run(
        [str(BIN / "dback"), *arguments],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=120,
        env=dict(env),
    )
    return done.stdout + done.stderr


async def everything(dback: Dback) -> dict[str, str]:
    """Every output of the running ``dback`` and of the command line in its environment,
    by where it came from (its log is read separately, once it has stopped)."""
    found = {}
    for path in PATHS:
        found[path] = (await asyncio.to_thread(get, dback.port, path)).body.decode()
    found["status page"] = await rendered_status_page(dback.port)
    for arguments in (["plugins"], ["plugins", "--json"], ["serve", "--help"]):
        text = await asyncio.to_thread(run_dback, dback.env, *arguments)
        found["dback " + " ".join(arguments)] = text
    return found


def written_forms(secret: str) -> set[str]:
    """The ways ``secret`` could be written out: as it is, percent-encoded (each way), and
    inside the quotes of a Python ``repr`` and of JSON."""
    return {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }


def leaks(outputs: Mapping[str, str], secrets: Sequence[str], words: Sequence[str]) -> list[str]:
    """Where any form of ``secrets``, or any of ``words`` (pieces of them), appears."""
    found = []
    for where, text in outputs.items():
        for secret in secrets:
            found += [f"{where}: {form!r}" for form in written_forms(secret) if form in text]
        found += [f"{where}: {word!r}" for word in words if word in text]
    return found
