"""Plain HTTP on the WebSocket port: version, health, metrics, and a front end's static files.

The d-zone client is usually served from the same origin as its socket, so dback serves a
directory of static files. Paths are resolved and then checked to lie inside that directory
after symlinks are followed - a prefix comparison of strings would let ``/srv/dist-evil``
pass for ``/srv/dist``.
"""

from __future__ import annotations

import http
import json
import mimetypes
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

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


def resolve_static(root: Path, url_path: str) -> Path | None:
    """The file under ``root`` that ``url_path`` names, or None if it is outside or missing."""
    decoded = unquote(urlsplit(url_path).path)
    if "\x00" in decoded or "\\" in decoded:
        return None
    relative = decoded.lstrip("/")
    if any(part == ".." for part in relative.split("/")):
        return None
    base = root.resolve()
    candidate = (base / relative).resolve()
    if not candidate.is_relative_to(base):
        return None
    if candidate.is_dir():
        candidate = candidate / "index.html"
    return candidate if candidate.is_file() else None


def static_file(root: Path, url_path: str) -> Response:
    path = resolve_static(root, url_path)
    if path is None:
        return response(404, "Not Found")
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type in {"application/javascript"}:
        content_type += "; charset=utf-8"
    return response(200, path.read_bytes(), content_type)


def version_response() -> Response:
    return json_response(200, {"version": __version__})
