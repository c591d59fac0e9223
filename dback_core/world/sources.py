"""Running the plugins' event sources: one task each, restarted with backoff.

An event source is a long-lived stream (a database LISTEN, a Discord gateway, a simulation).
When it ends or raises, the core logs it with the plugin's name and starts it again after a
``Backoff`` delay that doubles up to a ceiling (and starts over after a source that ran
for ``healthy_after`` seconds), so a broken source neither dies silently nor spins.

Stopping is bounded: a source that does not end within ``CANCEL_GRACE`` of its cancellation
(stuck in a library's cleanup) is abandoned and logged, and nothing it yields afterwards is
published - a process putting its providers on standby must be silent at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Protocol

from dback_core.plugin.backoff import Backoff
from dback_core.plugin.events import Event
from dback_core.plugin.tasks import CANCEL_GRACE, cancel_within

log = logging.getLogger(__name__)

Publish = Callable[[Event, str | None], Awaitable[None]]


class SourceOwner(Protocol):
    """The plugin an event source belongs to, as far as running it goes: its name."""

    @property
    def name(self) -> str: ...


class SourceRunner:
    """Keeps one task per event source alive until ``stop``."""

    def __init__(
        self,
        publish: Publish,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        healthy_after: float = 60.0,
    ) -> None:
        self.publish = publish
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.healthy_after = healthy_after
        self.restarts: dict[str, int] = {}
        self._tasks: list[tuple[str, asyncio.Task[None]]] = []
        #: Tasks being stopped: whatever they still yield is dropped.
        self._stopping: set[asyncio.Task[Any]] = set()

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return [task for _, task in self._tasks]

    def start(self, sources: Sequence[tuple[SourceOwner, Callable[[], Any]]]) -> None:
        for record, factory in sources:
            name = f"dback-source-{record.name}-{getattr(factory, '__name__', 'source')}"
            task = asyncio.create_task(self._run(record, factory), name=name)
            self._tasks.append((record.name, task))

    async def stop(self, plugins: Collection[str] | None = None) -> None:
        """Stop every source, or those of the plugins named, within ``CANCEL_GRACE``."""
        chosen = [(name, task) for name, task in self._tasks if plugins is None or name in plugins]
        stopping = [task for _, task in chosen]
        self._tasks = [(name, task) for name, task in self._tasks if task not in stopping]
        self._stopping.update(stopping)
        for task in stopping:
            task.add_done_callback(self._stopping.discard)
        owners = ", ".join(sorted({name for name, _ in chosen}))
        await cancel_within(stopping, f"event sources of {owners}", CANCEL_GRACE)

    async def _run(self, record: SourceOwner, factory: Callable[[], Any]) -> None:
        backoff = Backoff(self.initial_backoff, self.max_backoff, reset_after=self.healthy_after)
        while True:
            backoff.attempt()
            failure: Exception | None = None
            try:
                await self._consume(record, factory)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failure = error
            if asyncio.current_task() in self._stopping:
                return  # it ended late, after its cancellation: not to be restarted
            self.restarts[record.name] = self.restarts.get(record.name, 0) + 1
            delay = backoff.next()
            if failure is None:
                log.warning(
                    "plugin %s: event source ended; restarting in %.1fs", record.name, delay
                )
            else:
                log.error(
                    "plugin %s: event source failed; restarting in %.1fs",
                    record.name,
                    delay,
                    exc_info=failure,
                )
            await asyncio.sleep(delay)

    async def _consume(self, record: SourceOwner, factory: Callable[[], Any]) -> None:
        stream = factory()
        if asyncio.iscoroutine(stream):
            stream = await stream
        async for event in stream:
            if asyncio.current_task() in self._stopping:
                log.debug("plugin %s: dropped an event of a source being stopped", record.name)
                return
            await self.publish(event, record.name)
