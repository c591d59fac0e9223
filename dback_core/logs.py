"""Logging setup for the ``dback`` command: quiet, one line per notable event."""

from __future__ import annotations

import logging


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # websockets logs every failed handshake at INFO; those are not the operator's business.
    logging.getLogger("dback_core.websockets").setLevel(max(logging.WARNING, root.level))
