"""Reading a ``dback serve`` subprocess that logs JSON lines (``--log-format json``)."""

from __future__ import annotations

import asyncio
import json


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
