"""Plain HTTP on the WebSocket port: version, health, metrics; the responses and the methods.

Every path answers GET and HEAD (the same headers, no body) and nothing else: a POST or
DELETE gets 405 with an ``Allow`` header, as from any file server, instead of the page.
Static files live in ``dback_core.wire.static``.
"""

from __future__ import annotations

import dataclasses
import http
import json
from collections.abc import Awaitable, Callable

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from dback_core.version import __version__

#: Optional d-back style hook: ``async def handler(path) -> (content_type, body) | None``.
StaticHandler = Callable[[str], Awaitable[tuple[str, str | bytes] | None]]

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
VERSION_PATH = "/api/version"
PLUGINS_PATH = "/api/plugins"
METRICS_PATH = "/metrics"


#: The methods every plain HTTP path answers.
ALLOWED_METHODS = ("GET", "HEAD")


def is_websocket_upgrade(request: Request) -> bool:
    return "websocket" in request.headers.get("Upgrade", "").lower()


def response(
    status: int, body: bytes | str, content_type: str = "text/plain; charset=utf-8"
) -> Response:
    payload = body.encode() if isinstance(body, str) else body
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(payload))),
            ("X-Content-Type-Options", "nosniff"),
            ("Cache-Control", "no-cache"),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, payload)


def json_response(status: int, value: object) -> Response:
    return response(status, json.dumps(value), "application/json")


def version_response() -> Response:
    return json_response(200, {"version": __version__})


def method_not_allowed() -> Response:
    answer = response(405, "Method Not Allowed\n")
    answer.headers["Allow"] = ", ".join(ALLOWED_METHODS)
    return answer


def without_body(answer: Response) -> Response:
    """The answer to a HEAD request: GET's headers, Content-Length included, and no body."""
    return dataclasses.replace(answer, body=b"")
