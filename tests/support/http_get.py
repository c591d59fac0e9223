"""Plain HTTP GETs against a running dback, as a browser, a probe or a scraper sends them.

An answer of any status is returned, never raised, so a test can assert a 404 or a 503 like
a 200. ``target`` is a running server (its bound address) or the port of one on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import http.client
import json
from typing import Any, NamedTuple


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def content(self) -> Any:
        """The body as JSON, or as text when it is not JSON (``/metrics``, pages)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return self.text


def get(target: Any, path: str) -> Answer:
    host, port = ("127.0.0.1", target) if isinstance(target, int) else target.address
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return Answer(answer.status, dict(answer.getheaders()), answer.read())
    finally:
        connection.close()


async def fetch(target: Any, path: str) -> Answer:
    """``get`` off the event loop, for tests whose server runs on it."""
    return await asyncio.to_thread(get, target, path)


def get_content(target: Any, path: str) -> tuple[int, Any]:
    """The status and the body as JSON (or text): what most health checks look at."""
    answer = get(target, path)
    return answer.status, answer.content()


async def fetch_content(target: Any, path: str) -> tuple[int, Any]:
    """``get_content`` off the event loop."""
    return await asyncio.to_thread(get_content, target, path)
