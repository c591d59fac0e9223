"""A front end's static files (``--static-dir``), streamed like a file server would.

Reading a file whole into each response cost its size in memory per download (60 clients
fetching a 10 MB bundle: +1 GB), and the download ran inside the WebSocket handshake, so it
was cut off when ``DBACK_OPEN_TIMEOUT`` expired. Here a file is sent in ``CHUNK``-sized
pieces, each written only once the socket took the previous one: a download costs at most a
chunk plus the transport's small write buffer, whatever the file's size or the client's
speed. The download leaves the handshake deadline and is dropped only when the client reads
nothing for ``DBACK_STATIC_STALL_TIMEOUT`` seconds - with a log line, and before the
promised ``Content-Length`` is reached, so the client knows the file is incomplete.

Paths are resolved and then checked to lie inside the directory after symlinks are followed
- a prefix comparison of strings would let ``/srv/dist-evil`` pass for ``/srv/dist``.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
from html.parser import HTMLParser
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.protocol import CONNECTING

from dback_core.wire import http
from dback_core.wire.connections import CountedConnection
from dback_core.wire.limits import LogThrottle

log = logging.getLogger(__name__)

#: Bytes read from the file and handed to the socket at a time.
CHUNK = 64 * 1024


def resolve(root: Path, url_path: str) -> Path | None:
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


#: Where the operator learns how to build the d-zone client and point it at dback.
FRONT_END_GUIDE = "docs/deployment.md#the-d-zone-client"


def front_end_problem(root: Path) -> str | None:
    """Why ``root`` cannot serve a front end, or None when it has an ``index.html``.

    Without one, ``/`` answers 404 and the browser shows nothing, with no hint why: the usual
    cause is a client that was never built, or the checkout's root given instead of the
    build folder - which is named when one below ``root`` has the ``index.html``.
    """
    index = root / "index.html"
    if index.is_file():
        missing = [src for src in _local_scripts(index) if resolve(root, src) is None]
        if not missing:
            return None
        return (
            f"{index} loads {', '.join(missing)}, which {root} does not have: the front end "
            f"is not built yet ({FRONT_END_GUIDE})"
        )
    below = sorted(index.parent for index in root.glob("*/index.html"))
    hint = f" (did you mean {below[0]}?)" if below else ""
    return (
        f"{root} has no index.html, so it serves no front end{hint}: build the d-zone client "
        f"and give its output folder ({FRONT_END_GUIDE}), or leave the option unset for "
        "dback's status page"
    )


class _ScriptSources(HTMLParser):
    """Collects the ``src`` of every ``<script>`` tag."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        source = dict(attrs).get("src")
        if tag == "script" and source:
            self.sources.append(source)


def _local_scripts(index: Path) -> list[str]:
    """The scripts ``index`` loads from its own folder (relative URLs only): a build output
    such as d-zone's ``static/bundle.js``."""
    parser = _ScriptSources()
    parser.feed(index.read_text(errors="replace"))
    return [
        source
        for source in parser.sources
        if not urlsplit(source).scheme and not source.startswith("/")
    ]


def content_type(path: Path) -> str:
    guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if guessed.startswith("text/") or guessed == "application/javascript":
        guessed += "; charset=utf-8"
    return guessed


def _open(root: Path, url_path: str) -> tuple[BinaryIO, Path, int] | None:
    path = resolve(root, url_path)
    if path is None:
        return None
    file = path.open("rb")
    return file, path, os.fstat(file.fileno()).st_size


class StaticFiles:
    """Serves one directory; ``answer`` is called from the server's ``process_request``."""

    def __init__(self, root: Path, stall_timeout: float) -> None:
        self.root = root
        self.stall_timeout = stall_timeout
        self.failures = LogThrottle(log)
        #: Connections with a download under way, aborted by ``abort_all`` at shutdown.
        self.downloads: set[CountedConnection] = set()

    def abort_all(self) -> None:
        """Drop every download: shutting down must not wait for the slowest reader."""
        for connection in list(self.downloads):
            connection.transport.abort()

    async def answer(self, connection: CountedConnection, request: Request) -> Response:
        """The file's headers; for GET the body has been streamed by the time this returns."""
        try:
            opened = await asyncio.to_thread(_open, self.root, request.path)
        except OSError as error:  # EMFILE among others: tell the client, not the traceback log
            self.failures.warning("cannot open a static file: %s", error)
            return http.response(503, "Cannot open the file right now.\n")
        if opened is None:
            return http.response(404, "Not Found")
        file, path, size = opened
        with file:
            head = Response(
                200,
                "OK",
                Headers(
                    [
                        ("Content-Type", content_type(path)),
                        ("Content-Length", str(size)),
                        ("X-Content-Type-Options", "nosniff"),
                        ("Cache-Control", "no-cache"),
                        ("Connection", "close"),
                    ]
                ),
                b"",
            )
            if request.method == "HEAD" or connection.protocol.state is not CONNECTING:
                return head  # a client gone already is answered by nobody
            self.downloads.add(connection)
            try:
                await self._stream(connection, head, file, size, request.path)
            finally:
                self.downloads.discard(connection)
        return head

    async def _stream(
        self,
        connection: CountedConnection,
        head: Response,
        file: BinaryIO,
        size: int,
        url_path: str,
    ) -> None:
        """Write the head and the file with flow control, then close the connection.

        websockets writes its response only while the connection is still being opened;
        once this returns the connection is closed, so it writes nothing more.
        """
        connection.release_deadline()
        transport = connection.transport
        transport.pause_reading()  # a request has no body; nothing more is read
        transport.write(head.serialize())
        sent = 0
        try:
            while sent < size and not transport.is_closing():
                chunk = await asyncio.to_thread(file.read, min(CHUNK, size - sent))
                if not chunk:
                    break  # the file shrank: the promised length cannot be honoured
                transport.write(chunk)
                sent += len(chunk)
                async with asyncio.timeout(self.stall_timeout):
                    await connection.drain()
            if sent == size:
                transport.close()  # after the buffered bytes are sent
                async with asyncio.timeout(self.stall_timeout):
                    await asyncio.shield(connection.connection_lost_waiter)
                return
        except TimeoutError:
            log.info(
                "static file %s to %s: no progress for %.0f s, dropped after %d of %d bytes",
                url_path,
                connection.counted_address,
                self.stall_timeout,
                sent,
                size,
            )
        except (OSError, RuntimeError):
            pass  # the client or the server went away (RuntimeError: writing after EOF)
        transport.abort()
        await asyncio.shield(connection.connection_lost_waiter)
