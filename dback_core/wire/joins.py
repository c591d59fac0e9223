"""Compressed joins: computed once per guild version, off the event loop, kept by bytes.

A ``connect`` costs the client some 60 bytes; the join it asks for can be hundreds of
kilobytes to compress (about 3 ms for a 165 KB join). When the compressed join was cached by
count and clients switched between more big guilds than the cache held, every switch
compressed again on the event loop: 250 connections switching between 40 such guilds took
90 % of a core and stalled every viewer's frames for up to a second.

Here each compressed message for one viewer is kept under a key naming what it is (a guild's
join for one way of asking for it, a guild's member list), together with the payload it
was made from: a guild that changed makes a new payload, which replaces its old entry rather
than adding one. Entries are dropped least recently used first once they hold more than
``budget`` bytes (payload and compressed bytes both count), so every big guild's join fits
in the default budget rather than the eight most recent. What is not cached is compressed on
one worker thread (zlib releases the GIL while it compresses): the event loop never waits
for it, and however many clients ask for the same message at once it is compressed once.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor

from dback_core.wire.deflate import deflate_fresh


class CompressedJoins:
    """History-free compressed payloads by key, bounded by ``budget`` bytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        #: Compressions done, for diagnostics (and tests that check nothing is redone).
        self.compressions = 0
        self._entries: OrderedDict[Hashable, tuple[bytes, bytes]] = OrderedDict()
        self._pending: dict[Hashable, tuple[bytes, asyncio.Future[bytes]]] = {}
        self._executor: ThreadPoolExecutor | None = None

    async def deflated(self, key: Hashable, payload: bytes) -> bytes:
        """``payload`` compressed without history; ``key`` names what it is."""
        entry = self._entries.get(key)
        if entry is not None and (entry[0] is payload or entry[0] == payload):
            self._entries.move_to_end(key)
            return entry[1]
        pending = self._pending.get(key)
        if pending is None or not (pending[0] is payload or pending[0] == payload):
            future = asyncio.ensure_future(self._compress(key, payload))
            pending = self._pending[key] = (payload, future)
        # Shielded: a viewer that leaves while waiting must not cancel the others' result.
        return await asyncio.shield(pending[1])

    async def _compress(self, key: Hashable, payload: bytes) -> bytes:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dback-deflate")
        try:
            loop = asyncio.get_running_loop()
            deflated = await loop.run_in_executor(self._executor, deflate_fresh, payload)
        finally:
            if self._pending.get(key, (None,))[0] is payload:
                del self._pending[key]
        self.compressions += 1
        self._keep(key, payload, deflated)
        return deflated

    def _keep(self, key: Hashable, payload: bytes, deflated: bytes) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= len(old[0]) + len(old[1])
        cost = len(payload) + len(deflated)
        if cost > self.budget:
            return
        self._entries[key] = (payload, deflated)
        self.size += cost
        while self.size > self.budget:
            _, (dropped, dropped_deflated) = self._entries.popitem(last=False)
            self.size -= len(dropped) + len(dropped_deflated)

    def close(self) -> None:
        """Let the worker thread go once the compressions asked for are done."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        self._entries.clear()
        self.size = 0
