"""``from d_back.server import WebSocketServer`` - d-back's import path, served by dback."""

from dback_core.api import WebSocketServer

__all__ = ["WebSocketServer"]
