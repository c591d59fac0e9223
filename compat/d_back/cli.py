"""d-back's command line - ``--port``, ``--host``, ``--static-dir``, ``--version`` - on dback.

The flags and defaults are d-back's (``localhost:3000``), so scripts and tests that start
``python -m d_back`` keep working. The server is a ``WebSocketServer`` like any d-back
program's: the installed plugins serve (the embedded mock when there are no others), and
``DBACK_*`` variables (plugins, limits, ``DBACK_LOG_LEVEL``, ``DBACK_LOG_FORMAT``) apply as they
do for ``dback serve``. SIGINT and SIGTERM stop it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from d_back import __version__
from d_back.server import WebSocketServer
from dback_core.ops.logs import configure_logging
from dback_core.version import __version__ as core_version
from dback_core.wire.static import front_end_problem

log = logging.getLogger("d_back")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """d-back's flags and defaults."""
    parser = argparse.ArgumentParser(
        prog="d_back",
        description="Serve d-zone clients (d-back's command line, served by dback).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=3000, help="port for WebSocket and HTTP")
    parser.add_argument("--host", default="localhost", help="address to listen on")
    parser.add_argument(
        "--static-dir",
        default=None,
        help="serve a front end from this directory (default: dback's status page)",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {__version__} (dback-core {core_version})",
    )
    return parser.parse_args(argv)


def static_dir(value: str | None) -> Path | None:
    """The front end to serve; like d-back, a missing directory is a warning, not an error."""
    if value is None:
        return None
    path = Path(value)
    if path.is_dir():
        problem = front_end_problem(path)
        if problem is not None:
            log.warning("static directory %s", problem)
        return path
    log.warning("static directory %r does not exist; serving dback's status page instead", value)
    return None


async def serve(server: WebSocketServer) -> None:
    """Serve until SIGINT or SIGTERM, then stop the server cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    await stop.wait()
    log.info("shutting down")
    await server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        configure_logging(
            os.environ.get("DBACK_LOG_LEVEL") or "INFO",
            (os.environ.get("DBACK_LOG_FORMAT") or "text").lower(),
        )
    except ValueError as error:
        raise SystemExit(f"d_back: {error}") from error
    server = WebSocketServer(port=args.port, host=args.host)
    server.static_dir = static_dir(args.static_dir)
    try:
        asyncio.run(serve(server))
    except OSError as error:
        raise SystemExit(f"d_back: cannot listen on {args.host}:{args.port}: {error}") from error
