"""dback's own status page: a small live view of guilds, members, chat and plugins.

Plain HTML, CSS and JavaScript shipped as package data - no build step and no CDN, because
the machines dback runs on often have no internet. The page speaks the d-zone WebSocket
protocol to the server that served it, so it doubles as a live check of that protocol.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

#: URL prefix for the page's own assets, kept apart from a front end's static files.
ASSET_PREFIX = "/_dback/"

_CONTENT_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "status.css": "text/css; charset=utf-8",
    "status.js": "text/javascript; charset=utf-8",
}


def asset(name: str) -> tuple[str, bytes] | None:
    """The content type and bytes of one of the page's files, or None for any other name."""
    content_type = _CONTENT_TYPES.get(name)
    if content_type is None:
        return None
    return content_type, _read(name)


@cache
def _read(name: str) -> bytes:
    """A file's bytes, read once: package data does not change while the server runs."""
    return files(__name__).joinpath(name).read_bytes()
