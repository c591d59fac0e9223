"""Running a ``dback serve`` subprocess that logs JSON lines (``--log-format json``)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any


async def serving_port(stream: asyncio.StreamReader, seen: list[str], timeout: float = 60) -> int:
    """The port from the server's "serving ... on ws://host:port" line; every line read is
    kept in ``seen`` so a failing test can show the log."""
    while True:
        line = (await asyncio.wait_for(stream.readline(), timeout)).decode()
        assert line, "dback serve exited early:\n" + "".join(seen)
        seen.append(line)
        message = json.loads(line)["message"]
        if message.startswith("serving "):
            return int(message.rsplit(":", 1)[1])


@dataclass
class Served:
    """A ``dback serve`` process, the port it listens on, and its log lines so far (all of
    them once it has stopped)."""

    process: asyncio.subprocess.Process
    port: int = 0
    lines: list[str] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line.strip()]


@asynccontextmanager
async def serving(
    *command: str, env: Mapping[str, str], timeout: float = 60
) -> AsyncIterator[Served]:
    """Run ``command`` (a server that logs JSON to stderr) until it listens; SIGTERM it on
    leaving and wait for it to exit, so ``process.returncode`` says how it ended."""
    process = await asyncio.create_subprocess_exec(
        *command, env=dict(env), stderr=asyncio.subprocess.PIPE
    )
    served = Served(process)
    try:
        assert process.stderr is not None
        served.port = await serving_port(process.stderr, served.lines, timeout)
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(process.communicate(), 30)
        served.lines.extend(rest.decode().splitlines(keepends=True))
