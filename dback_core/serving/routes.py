"""The plain HTTP answers on the WebSocket port, as a table of paths.

Fixed paths (version, health, readiness, metrics, plugins) are looked up in ``Routes.table``;
what no entry names falls through, in order, to dback's status page, a d-back style static
handler, the static directory, and the status page again for ``/`` when nothing else serves
it. Every path answers GET and HEAD alike (HEAD without the body) and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from dback_core.serving import status_page
from dback_core.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from dback_core.serving.metrics import Metrics
from dback_core.wire import http
from dback_core.wire.connections import CountedConnection
from dback_core.wire.static import StaticFiles


def page_response(name: str) -> Response:
    """One file of dback's own status page (``/_dback/`` itself is its index), or 404."""
    answer = status_page.asset(name or "index.html")
    if answer is None:
        return http.response(404, "Not Found")
    content_type, body = answer
    return http.response(200, body, content_type)


class Routes:
    """The HTTP side of one server: ``process_request`` for ``websockets``' ``serve``."""

    def __init__(
        self,
        *,
        describe_plugins: Callable[[], dict[str, Any]],
        readiness: Callable[[], Mapping[str, str]],
        metrics: Metrics,
        static_handler: http.StaticHandler | None = None,
        static_files: StaticFiles | None = None,
    ) -> None:
        self.readiness = readiness
        self.metrics = metrics
        self.static_handler = static_handler
        self.static_files = static_files
        self.table: dict[str, Callable[[], Response]] = {
            http.VERSION_PATH: http.version_response,
            http.HEALTH_PATH: lambda: http.json_response(200, {"status": "ok"}),
            http.READY_PATH: self.ready,
            http.METRICS_PATH: self.scrape,
            http.PLUGINS_PATH: lambda: http.json_response(200, describe_plugins()),
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
        if self.static_handler is not None:
            found = await self.static_handler(path)
            if found is not None:
                content_type, body = found
                return http.response(200, body, content_type)
        if self.static_files is not None:
            assert isinstance(connection, CountedConnection)
            return await self.static_files.answer(connection, request)
        if path == "/":
            return page_response("index.html")
        return http.response(404, "Not Found")

    def ready(self) -> Response:
        waiting = dict(self.readiness())
        report = {"ready": not waiting, **({"waiting": waiting} if waiting else {})}
        return http.json_response(503 if waiting else 200, report)

    def scrape(self) -> Response:
        return http.response(200, self.metrics.render(), METRICS_CONTENT_TYPE)
