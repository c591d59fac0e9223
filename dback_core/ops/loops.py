"""Which event loop ``dback serve`` runs on: asyncio's, or uvloop's when asked for.

uvloop is optional (the ``speed`` extra). ``make bench`` measured it at 10,000 viewers: about
a fifth less server CPU per delivery and half the p99 latency, with byte-identical frames
(docs/performance.md). It is not the default because the core's protection against running
out of file descriptors is built on asyncio's accept loop: on uvloop, viewers starve once
descriptors run out. ``DBACK_EVENT_LOOP`` chooses: ``asyncio`` (the default), ``uvloop``
(an error when it is not installed), ``auto`` (uvloop when it can be imported).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

from dback_core.plugin.errors import SettingsError

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: str) -> tuple[str, LoopFactory | None]:
    """The loop's name and a factory for ``asyncio.Runner`` (None: asyncio's own loop)."""
    if choice == "asyncio":
        return "asyncio", None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise SettingsError(
                "DBACK_EVENT_LOOP", "is 'uvloop' but uvloop is not installed (pip install uvloop)"
            ) from None
        return "asyncio", None
    factory: LoopFactory = uvloop.new_event_loop
    return "uvloop", factory
