"""Sockets counted from the moment they are accepted, before a byte of HTTP is read.

Counting connections only once their WebSocket handshake completed let one address hold
thousands of half-open sockets - each a file descriptor - until the process ran out of
them. Here the count starts in ``connection_made``: a socket past the per-address or total
limit gets a canned HTTP answer and is closed at once, without a handshake task, a parser
or a timer. Plain HTTP requests (health checks, static files) count too: they hold a
descriptor just the same.

The handshake deadline (``DBACK_OPEN_TIMEOUT``) also runs from accept, as a timer on the
connection instead of websockets' own timeout around the whole handshake, so that a static
file download - which answers inside the handshake - can take itself off it and be timed by
its own progress instead of being cut off after a fixed time.

A connection whose writes stay paused - the kernel's send buffer is full and more than
websockets' write limit (32 KiB) waits in the process - for ``max_lag`` seconds is cut: its
client has read nothing for that long. The byte bound (``DBACK_MAX_CLIENT_BUFFER``) alone let a
client that reads nothing keep its connection for as long as its backlog grew slowly, which
with compression (20-byte presences) is a long time.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.protocol import CONNECTING, OPEN

from dback_core.wire.addresses import peer_address
from dback_core.wire.limits import ConnectionCounter, LogThrottle

log = logging.getLogger(__name__)


def refusal_bytes(status: int, reason: str) -> bytes:
    """A complete HTTP response, written without looking at what the client sent."""
    body = reason.encode()
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class CountedConnection(ServerConnection):
    """A ``ServerConnection`` that counts itself from accept and times its own handshake.

    Built by websockets' ``serve`` through ``create_connection`` (see ``counted_connections``).
    """

    def __init__(
        self,
        *args: Any,
        counter: ConnectionCounter,
        open_timeout: float,
        refusals: LogThrottle,
        max_lag: float = 0.0,
        on_lag: Callable[[ServerConnection, str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.counter = counter
        self.open_timeout = open_timeout
        self.refusals = refusals
        #: Seconds writes may stay paused before ``on_lag`` cuts the connection (0: never).
        self.max_lag = max_lag
        self.on_lag = on_lag
        self._lag_timer: asyncio.TimerHandle | None = None
        #: The address this connection is counted under (an IPv6 client's /64); None when
        #: it was refused.
        self.counted_address: str | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        address = peer_address(transport.get_extra_info("peername"))
        refusal = self.counter.refusal(address)
        if refusal is not None:
            status, reason = refusal
            self.refusals.warning("refused %s: %s", address, reason.strip())
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(refusal_bytes(status, reason))
            transport.close()
            return
        self.counter.opened(address)
        self.counted_address = address
        super().connection_made(transport)
        self._deadline = self.loop.call_later(self.open_timeout, self._handshake_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted_address is None:
            return  # refused in connection_made: websockets never knew of this socket
        self.release_deadline()
        self._stop_lag_timer()
        try:
            super().connection_lost(exc)
        finally:
            self.counter.closed(self.counted_address)

    def pause_writing(self) -> None:
        super().pause_writing()
        # Only open WebSockets: a static download is timed by its own progress.
        if self.max_lag > 0 and self.on_lag is not None and self.protocol.state is OPEN:
            self._lag_timer = self.loop.call_later(self.max_lag, self._lagged)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stop_lag_timer()

    def _stop_lag_timer(self) -> None:
        if self._lag_timer is not None:
            self._lag_timer.cancel()
            self._lag_timer = None

    def _lagged(self) -> None:
        self._lag_timer = None
        closing = self.transport.is_closing()
        if self.on_lag is not None and self.protocol.state is OPEN and not closing:
            self.on_lag(self, f"nothing read for {self.max_lag:g} s")

    def release_deadline(self) -> None:
        """Take this connection off the handshake deadline (a download times itself)."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _handshake_expired(self) -> None:
        self._deadline = None
        if self.protocol.state is CONNECTING:
            log.debug("dropped %s: handshake not finished in time", self.counted_address)
            self.transport.abort()


def counted_connections(
    counter: ConnectionCounter,
    open_timeout: float,
    refusals: LogThrottle,
    max_lag: float = 0.0,
    on_lag: Callable[[ServerConnection, str], None] | None = None,
) -> Any:
    """The ``create_connection`` argument of websockets' ``serve`` for counted connections;
    ``on_lag`` cuts a connection whose writes stayed paused for ``max_lag`` seconds."""

    def create(*args: Any, **kwargs: Any) -> CountedConnection:
        return CountedConnection(
            *args,
            counter=counter,
            open_timeout=open_timeout,
            refusals=refusals,
            max_lag=max_lag,
            on_lag=on_lag,
            **kwargs,
        )

    return create
