"""The event source: LISTEN on one dedicated connection, turn notifications into events.

The triggers send only keys (NOTIFY payloads are limited to 8000 bytes), and the listener
reads the rows as they are now, on its own connection, so a pool whose connections are being
killed cannot stall it. That makes every notification idempotent: a burst of changes to one
member collapses into one read of its current state, and a member whose row is gone is
removed. Whenever the listening connection is (re)established, the guild list and every guild
are reloaded and the chat messages missed meanwhile are delivered (see ``chat``), so changes
made while it was down are not lost. The same reload replaces the notifications of a burst
too large to hold (a bulk UPDATE of every member): at most ``MAX_PENDING`` wait, beyond that
they are dropped and everything is reloaded.

A database that cannot be reached is transient: the listener reports the plugin
``unavailable`` and tries again after a delay that starts at ``INITIAL_DELAY`` after every
success and doubles up to ``DBACK_POSTGRES_RETRY_MAX``. One that refuses for a reason only
its operator can fix (see ``diagnosis``) makes the plugin ``failed`` and is checked again
ever more slowly, up to every ``DBACK_POSTGRES_RECHECK_MAX``, so the fix is noticed without
a restart. ``outage`` decides what of all that is logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg

from dback_core.plugin.backoff import Backoff
from dback_core.plugin.events import ClientIdUpdate, Event, Presence, Refresh
from dback_postgres import queries
from dback_postgres.chat import ChatCursor
from dback_postgres.database import DATABASE_ERRORS, Database, SchemaBehind
from dback_postgres.diagnosis import Trouble, diagnose, schema_behind
from dback_postgres.migrations import CHANNEL
from dback_postgres.outage import Outage, Report

log = logging.getLogger(__name__)

#: Notifications read in one go before the rows behind them are fetched together.
BATCH = 1000
#: Notifications held unread at most; when more arrive, every guild is reloaded instead.
MAX_PENDING = 10_000
#: Seconds before the first attempt to reconnect after a success.
INITIAL_DELAY = 0.1


class ConnectionLost(ConnectionError):
    """The listening connection was closed by the server or the network."""


#: What makes the listener report itself unavailable and try again after a pause.
LISTEN_ERRORS: tuple[type[BaseException], ...] = (*DATABASE_ERRORS, ConnectionLost)


_LOST = object()


class ChangeListener:
    """Produces dback events from the database's notifications, reconnecting forever."""

    def __init__(
        self,
        database: Database,
        report: Report | None = None,
        resume_position: Callable[[], int | None] = lambda: None,
        chat_lost: Callable[[int, str], None] = lambda _count, _reason: None,
    ) -> None:
        self.database = database
        self.outage = Outage(database.settings.where, report or (lambda _status, _reason: None))
        self.connection: asyncpg.Connection | None = None
        #: Where chat delivered by another process (a bus's previous publisher) ended.
        self.resume_position = resume_position
        self.chat = ChatCursor(database.settings.chat_replay, chat_lost)
        #: True from the moment every change is being delivered (LISTEN on, resync applied).
        self.listening = False
        #: Set when a notification was dropped because ``MAX_PENDING`` were unread.
        self.overflowed = False

    async def events(self) -> AsyncIterator[Event]:
        """The event source the core runs. Database trouble is handled here (log, back off,
        reconnect, resync); anything else is a bug, left to the core to log and restart.

        Each start resumes chat where it was delivered up to, here or by another process."""
        settings = self.database.settings
        self.chat.resume(self.resume_position())
        backoff = Backoff(INITIAL_DELAY, settings.retry_max)
        recheck = Backoff(settings.retry_max, max(settings.retry_max, settings.recheck_max))
        while True:
            queue: asyncio.Queue[Any] = asyncio.Queue(MAX_PENDING)
            try:
                await self.database.ensure_ready()
                await self._listen(queue)
                resync = await self._resync()
                self.outage.over()
                backoff.reset()
                recheck.reset()
                for event in resync:
                    yield event
                self.listening = True
                log.info("listening on %s at %s", CHANNEL, settings.where)
                while True:
                    for event in await self._next_events(queue):
                        yield event
            except LISTEN_ERRORS as error:
                delay = self._trouble(diagnose(error, settings), backoff, recheck)
            except SchemaBehind as error:
                delay = self._trouble(schema_behind(str(error)), backoff, recheck)
            finally:
                self.listening = False
                await self.close()
            await asyncio.sleep(delay)

    def _trouble(self, trouble: Trouble, backoff: Backoff, recheck: Backoff) -> float:
        """Log and report ``trouble``; the seconds until the next attempt: soon for an
        outage, ever later for what only the operator can fix."""
        delay = (recheck if trouble.needs_operator else backoff).next()
        # The loss of a working connection is usually restored before anyone could notice:
        # the plugin is reported unavailable only when reconnecting fails too.
        self.outage.trouble(trouble, delay, report=not self.listening)
        return delay

    async def _listen(self, queue: asyncio.Queue[Any]) -> None:
        settings = self.database.settings
        self.connection = await asyncpg.connect(
            **settings.connect_args(), timeout=settings.timeout, command_timeout=settings.timeout
        )
        self.overflowed = False
        await self.connection.add_listener(
            CHANNEL, lambda _connection, _pid, _channel, payload: self._hold(queue, payload)
        )
        self.connection.add_termination_listener(lambda _connection: self._hold(queue, _LOST))

    def _hold(self, queue: asyncio.Queue[Any], payload: Any) -> None:
        """Queue a notification; a full queue means a reload is due (see ``MAX_PENDING``)."""
        try:
            queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.overflowed = True
            if payload is _LOST:
                # Make room: the lost connection must be noticed, the rest is reloaded.
                queue.get_nowait()
                queue.put_nowait(_LOST)

    async def _resync(self) -> list[Event]:
        """Reload the guild list and every guild, and deliver the chat missed meanwhile:
        anything may have changed while nobody listened."""
        rows = await self._fetch(queries.SERVERS)
        missed = await self.chat.missed(self.connection)
        return [
            Refresh(None),
            *(Refresh(row["server_id"]) for row in rows),
            *(queries.message(row) for row in missed),
        ]

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        """Rows read on the listening connection."""
        if self.connection is None:
            raise ConnectionLost("the listening connection is not open")
        rows: list[Any] = await self.connection.fetch(query, *args)
        return rows

    async def _next_events(self, queue: asyncio.Queue[Any]) -> list[Event]:
        """Wait for notifications (checking the connection when it is quiet), then translate."""
        assert self.connection is not None
        try:
            # Not ``wait_for``, which on Python 3.11 can swallow the cancellation that stops
            # this source when a notification arrives at the same moment.
            async with asyncio.timeout(self.database.settings.keepalive):
                first = await queue.get()
        except TimeoutError:
            await self.connection.fetchval("SELECT 1")
            return []
        payloads = [first]
        while len(payloads) < BATCH and not queue.empty():
            payloads.append(queue.get_nowait())
        if any(payload is _LOST for payload in payloads):
            raise ConnectionLost("the listening connection was closed")
        if self.overflowed:
            log.warning(
                "more than %d notifications on %s unread; reloading every guild instead",
                MAX_PENDING,
                CHANNEL,
            )
            dropped = [queue.get_nowait() for _ in range(queue.qsize())]
            if any(payload is _LOST for payload in dropped):
                raise ConnectionLost("the listening connection was closed")
            self.overflowed = False
            return await self._resync()
        return await self.translate(payloads)

    async def translate(self, payloads: list[str]) -> list[Event]:
        """Events for a batch of notifications: members first, then messages, then guilds."""
        member_keys: dict[tuple[str, str], None] = {}
        message_ids: list[int] = []
        servers_changed = False
        client_ids_changed: dict[str, None] = {}
        for payload in payloads:
            change = _parse(payload)
            if change is None:
                continue
            table = change["table"]
            if table == "users":
                member_keys.pop((change["server_id"], change["user_id"]), None)
                member_keys[(change["server_id"], change["user_id"])] = None
            elif table == "messages":
                message_ids.append(change["message_id"])
            elif table == "servers":
                servers_changed = True
                if change.get("client_id_changed"):
                    client_ids_changed[change["server_id"]] = None
        events: list[Event] = []
        if member_keys:
            events.extend(await self._members(list(member_keys)))
        if message_ids:
            rows = await self._fetch(queries.MESSAGES, message_ids)
            events.extend(queries.message(row) for row in self.chat.fresh(list(rows)))
        if servers_changed:
            events.append(Refresh(None))
        if client_ids_changed:
            rows = await self._fetch(queries.CLIENT_IDS, list(client_ids_changed))
            events.extend(
                ClientIdUpdate(row["server_id"], row["client_id"])
                for row in rows
                if row["client_id"]
            )
        return events

    async def _members(self, keys: list[tuple[str, str]]) -> list[Event]:
        """The current state of each changed member; a member without a row is removed."""
        rows = await self._fetch(
            queries.MEMBERS, [key[0] for key in keys], [key[1] for key in keys]
        )
        found = {(row["server_id"], row["user_id"]): row for row in rows}
        events: list[Event] = []
        for server_id, user_id in keys:
            row = found.get((server_id, user_id))
            if row is None:
                events.append(Presence(server_id, user_id, "offline", delete=True))
            else:
                events.append(queries.presence(row))
        return events

    async def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is None or connection.is_closed():
            return
        try:
            await asyncio.wait_for(connection.close(), self.database.settings.timeout)
        except DATABASE_ERRORS:
            connection.terminate()


#: The keys each trigger sends, with their types.
_FIELDS: dict[str, dict[str, type]] = {
    "users": {"server_id": str, "user_id": str},
    "servers": {"server_id": str},
    "messages": {"message_id": int},
}


def _parse(payload: str) -> dict[str, Any] | None:
    """A trigger's notification, or None (logged) for anything else on the channel."""
    try:
        change = json.loads(payload)
    except ValueError:
        change = None
    if not isinstance(change, dict) or change.get("table") not in _FIELDS:
        log.warning("ignored a notification on %s not sent by dback: %.200r", CHANNEL, payload)
        return None
    fields = _FIELDS[change["table"]].items()
    if any(_wrong_type(change.get(name), kind) for name, kind in fields):
        log.warning("ignored a notification on %s without its keys: %.200r", CHANNEL, payload)
        return None
    return change


def _wrong_type(value: Any, kind: type) -> bool:
    return not isinstance(value, kind) or isinstance(value, bool)
