"""The plain HTTP answers on the WebSocket port, as a table of paths.

Fixed paths (version, health, readiness, metrics, plugins) are looked up in ``Routes.table``;
what no entry names falls through, in order, to dback's status page, a d-back style static
handler, the static directory, and the status page again for ``/`` when nothing else serves
it. Every path answers GET and HEAD alike (HEAD without the body) and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from dback_core import http, status_page
from dback_core.connections import CountedConnection
from dback_core.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

if TYPE_CHECKING:
    from dback_core.server import DbackServer


def page_response(name: str) -> Response:
    """One file of dback's own status page (``/_dback/`` itself is its index), or 404."""
    answer = status_page.asset(name or "index.html")
    if answer is None:
        return http.response(404, "Not Found")
    content_type, body = answer
    return http.response(200, body, content_type)


class Routes:
    """The HTTP side of one server: ``process_request`` for ``websockets``' ``serve``."""

    def __init__(self, server: DbackServer) -> None:
        self.server = server
        self.table: dict[str, Callable[[], Response]] = {
            http.VERSION_PATH: http.version_response,
            http.HEALTH_PATH: lambda: http.json_response(200, {"status": "ok"}),
            http.READY_PATH: self.ready,
            http.METRICS_PATH: self.metrics,
            http.PLUGINS_PATH: lambda: http.json_response(200, server.plugins.describe()),
        }

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """None to open a WebSocket, else the plain HTTP answer (GET and HEAD only).

        Connection limits were applied when the socket was accepted (``connections``).
        """
        if request.method not in http.ALLOWED_METHODS:
            return http.method_not_allowed()
        if request.method == "GET" and http.is_websocket_upgrade(request):
            return None
        answer = await self.answer(connection, request)
        return http.without_body(answer) if request.method == "HEAD" else answer

    async def answer(self, connection: ServerConnection, request: Request) -> Response:
        path = request.path.split("?", 1)[0]
        route = self.table.get(path)
        if route is not None:
            return route()
        if path.startswith(status_page.ASSET_PREFIX):
            return page_response(path.removeprefix(status_page.ASSET_PREFIX))
        if self.server.static_handler is not None:
            found = await self.server.static_handler(path)
            if found is not None:
                content_type, body = found
                return http.response(200, body, content_type)
        if self.server.static_files is not None:
            assert isinstance(connection, CountedConnection)
            return await self.server.static_files.answer(connection, request)
        if path == "/":
            return page_response("index.html")
        return http.response(404, "Not Found")

    def ready(self) -> Response:
        waiting = self.server.readiness()
        report = {"ready": not waiting, **({"waiting": waiting} if waiting else {})}
        return http.json_response(503 if waiting else 200, report)

    def metrics(self) -> Response:
        return http.response(200, self.server.metrics.render(), METRICS_CONTENT_TYPE)
