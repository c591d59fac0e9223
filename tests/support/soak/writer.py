"""The writer: status changes and chat in PostgreSQL at known rates, each chat row recorded
with when its INSERT started and when its commit was acknowledged."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import asyncpg

from tests.support.postgres_database import member_uid
from tests.support.soak.cluster import GUILD
from tests.support.soak.viewers import CHAT_KEY_BASE, chat_text


@dataclass(frozen=True)
class Written:
    """One chat row: ``key`` as the viewers log it, and the times around its commit."""

    key: int
    started: float
    committed: float

    @property
    def sender(self) -> int:
        return self.key // CHAT_KEY_BASE


@dataclass
class WriterLog:
    chat: list[Written] = field(default_factory=list)
    #: Rows whose commit was never acknowledged (the connection failed): judged nowhere.
    uncertain: set[int] = field(default_factory=set)
    statuses: int = 0
    errors: int = 0


class Writer:
    """Runs until stopped; its own connection is the one PostgreSQL backend no fault ends."""

    def __init__(
        self, dsn: str, members: int, senders: int, chat_rate: float, status_rate: float
    ) -> None:
        self.dsn = dsn
        self.members = members
        self.senders = senders
        self.chat_rate = chat_rate
        self.status_rate = status_rate
        self.log = WriterLog()
        self.backend_pid = 0
        self._connection: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._rng = random.Random(7)

    async def start(self) -> None:
        await self._connect()
        self._tasks = [
            asyncio.create_task(self._every(1 / self.chat_rate, self._chat())),
            asyncio.create_task(self._every(1 / self.status_rate, self._status())),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()

    async def _connect(self) -> None:
        self._connection = await asyncpg.connect(self.dsn)
        self.backend_pid = self._connection.get_server_pid()

    async def _every(self, interval: float, steps: object) -> None:
        """Call the generator's steps on a fixed schedule (late steps catch up, none skipped)."""
        assert hasattr(steps, "__anext__")
        due = time.monotonic()
        while True:
            due += interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            async with self._lock:
                try:
                    await steps.__anext__()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    self.log.errors += 1
                    await asyncio.sleep(0.5)
                    await self._connect()

    async def _chat(self):  # type: ignore[no-untyped-def]
        seq = [0] * self.senders
        sender = 0
        while True:
            seq[sender] += 1
            key = sender * CHAT_KEY_BASE + seq[sender]
            started = time.monotonic()
            self.log.uncertain.add(key)
            assert self._connection is not None
            await self._connection.execute(
                "INSERT INTO messages (server_id, user_id, message) VALUES ($1, $2, $3)",
                GUILD,
                member_uid(GUILD, sender),
                chat_text(sender, seq[sender]),
            )
            self.log.uncertain.discard(key)
            self.log.chat.append(Written(key, started, time.monotonic()))
            sender = (sender + 1) % self.senders
            yield

    async def _status(self):  # type: ignore[no-untyped-def]
        version = 0
        while True:
            version += 1
            member = self._rng.randrange(self.members)
            status = self._rng.choice(("online", "idle", "dnd", "offline"))
            assert self._connection is not None
            await self._connection.execute(
                "UPDATE users SET status = $1, username = $2 WHERE user_id = $3",
                status,
                f"m{member} v{version}",
                member_uid(GUILD, member),
            )
            self.log.statuses += 1
            yield
