"""Viewers: websocket clients speaking the d-zone protocol, each recording what it saw in
sessions (one per connection) for the checker. Some read slowly (they stall for seconds,
then drain), some churn (reconnect every so often); every one reconnects, to the next
node, when its connection is lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

#: A chat text is "<sender index>:<sequence number>"; both packed in one int for the log.
CHAT_KEY_BASE = 1_000_000


def chat_text(sender: int, seq: int) -> str:
    return f"{sender}:{seq}"


def chat_key(text: str) -> int | None:
    sender, _, seq = text.partition(":")
    if not (sender.isdigit() and seq.isdigit()):
        return None
    return int(sender) * CHAT_KEY_BASE + int(seq)


def version_of(username: str) -> int:
    """The writer's counter in a username ``m<i> v<n>`` (-1 for anything else)."""
    _, _, version = username.rpartition(" v")
    return int(version) if version.isdigit() else -1


@dataclass
class Session:
    """One connection of a viewer: from its ``server-join`` to its end."""

    node: str
    opened: float
    closed: float = float("inf")
    #: "churn", "lost" (the connection failed), "fault" (the soak dropped it) or "end".
    ended_by: str = "end"
    chat: array[int] = field(default_factory=lambda: array("q"))
    #: When each entry of ``chat`` arrived (monotonic): a loss report tells late from never.
    chat_at: array[float] = field(default_factory=lambda: array("d"))
    foreign_chat: int = 0
    #: ``server-join`` frames after the first (the server rebuilt this viewer's world).
    rejoins: int = 0
    #: Presences older than one already shown (a lower username version for a uid).
    presence_regressions: int = 0


@dataclass
class Timeline:
    """Times the viewers need: while the writer runs, gaps between events are dark time."""

    writer_started: float = float("inf")
    writer_stopped: float = float("inf")


class Viewer:
    def __init__(
        self,
        index: int,
        urls: list[tuple[str, str]],
        kind: str,
        rng: random.Random,
        timeline: Timeline,
        churn_session: tuple[float, float],
    ) -> None:
        self.index = index
        self.urls = urls
        self.kind = kind  # "steady", "slow" or "churn"
        self.rng = rng
        self.timeline = timeline
        self.churn_session = churn_session
        self.target = index % len(urls)
        self.sessions: list[Session] = []
        #: uid -> (status, username): the world as this viewer's client would show it now.
        self.world: dict[str, tuple[str, str]] = {}
        self.connected = asyncio.Event()
        self.last_event = 0.0
        self.worst_dark = 0.0
        self.worst_dark_at = 0.0
        #: Where the worst dark time was spent: on which node, and whether the viewer was
        #: connected all along or (re)connecting (a node that took long to answer a new
        #: connection, such as a stopped worker holding its share of the port).
        self.worst_dark_where = ""
        self._drop = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"viewer{self.index}")

    def drop(self) -> None:
        """Close the current connection (a fault: the viewer reconnects at once)."""
        self._drop.set()

    async def stop(self) -> None:
        self._stopping = True
        self._drop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _dark(self, now: float, where: str = "") -> None:
        """Account the gap up to ``now`` in which this viewer saw nothing; ``where`` says
        how the gap ended (see ``worst_dark_where``)."""
        start = max(self.last_event, self.timeline.writer_started)
        end = min(now, self.timeline.writer_stopped)
        if end - start > self.worst_dark:
            self.worst_dark = end - start
            self.worst_dark_at = start
            self.worst_dark_where = where
        self.last_event = now

    async def _run(self) -> None:
        while not self._stopping:
            name, url = self.urls[self.target]
            with contextlib.suppress(OSError, TimeoutError, WebSocketException):
                await self._session(name, url)
            self.connected.clear()
            if self._stopping:
                break
            self.target = (self.target + 1) % len(self.urls)
            await asyncio.sleep(0.1 + self.rng.random() * 0.4)
        self._dark(min(time.monotonic(), self.timeline.writer_stopped))

    async def _session(self, name: str, url: str) -> None:
        options: dict[str, Any] = {"open_timeout": 10, "max_size": 2**20}
        if self.kind == "slow":
            options["max_queue"] = 4
        async with connect(url, **options) as socket:
            await asyncio.wait_for(socket.recv(), 10)  # server-list
            await socket.send(json.dumps({"type": "connect", "data": {"server": None}}))
            session: Session | None = None
            ends_at = float("inf")
            if self.kind == "churn":
                ends_at = time.monotonic() + self.rng.uniform(*self.churn_session)
            self._drop.clear()
            dropped = asyncio.create_task(self._drop.wait())
            try:
                while True:
                    timeout = min(ends_at - time.monotonic(), 30.0)
                    receiving = asyncio.create_task(socket.recv())
                    done, _ = await asyncio.wait(
                        {receiving, dropped},
                        timeout=max(timeout, 0),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if receiving not in done:
                        receiving.cancel()
                        with contextlib.suppress(BaseException):
                            await receiving
                    if dropped in done or time.monotonic() >= ends_at:
                        if session is not None:
                            session.closed = time.monotonic()
                            stopping = "end" if self._stopping else "fault"
                            session.ended_by = "churn" if not dropped.done() else stopping
                        return
                    if receiving not in done:
                        if session is None:
                            raise TimeoutError("no server-join")
                        continue
                    try:
                        frame = json.loads(receiving.result())
                    except ConnectionClosed:
                        if session is not None:
                            session.closed = time.monotonic()
                            session.ended_by = "lost"
                        raise
                    session = self._handle(frame, session, name)
                    if self.kind == "slow" and self.rng.random() < 0.01:
                        await asyncio.sleep(self.rng.uniform(1.0, 3.0))  # a stall
            finally:
                dropped.cancel()

    def _handle(self, frame: dict[str, Any], session: Session | None, node: str) -> Session | None:
        kind = frame.get("type")
        data = frame.get("data") or {}
        now = time.monotonic()
        if kind == "server-join":
            self.world = {
                uid: (user.get("status", ""), user.get("username", ""))
                for uid, user in (data.get("users") or {}).items()
            }
            if session is not None:  # the server rebuilt the world: the connection goes on
                session.rejoins += 1
                return session
            session = Session(node, now)
            self.sessions.append(session)
            self.connected.set()
            self._dark(now, f"{self.kind} viewer reconnecting, joined {node}")
            return session
        if session is None:
            return None
        if kind == "presence":
            self._dark(now, f"{self.kind} viewer connected to {node}")
            uid = data["uid"]
            if data.get("delete"):
                self.world.pop(uid, None)
                return session
            old = self.world.get(uid, ("", ""))
            username = data.get("username", old[1])
            if version_of(username) < version_of(old[1]):
                session.presence_regressions += 1
            self.world[uid] = (data.get("status", old[0]), username)
        elif kind == "message":
            self._dark(now, f"{self.kind} viewer connected to {node}")
            key = chat_key(str(data.get("message", "")))
            if key is None:
                session.foreign_chat += 1
            else:
                session.chat.append(key)
                session.chat_at.append(now)
        return session
