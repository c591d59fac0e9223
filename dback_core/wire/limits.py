"""Limits that keep one client from costing everyone else: message rate, connection counts,
and the log lines a flood of refusals would otherwise write.

A d-zone client sends one ``connect`` when it opens and one more per guild switch, so a
generous token bucket never touches a real user, while a flood (each ``connect`` may cost a
large ``server-join``) is cut off with close code 1008.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any


class ConnectionCounter:
    """Open sockets in total and per remote address, counted from accept until closed."""

    def __init__(self, max_total: int, max_per_address: int) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.per_address: Counter[str] = Counter()
        self.total = 0

    def refusal(self, address: str) -> tuple[int, str] | None:
        """An HTTP status and reason when one more connection from ``address`` is too many."""
        if self.total >= self.max_total:
            return 503, "Too many connections to this server.\n"
        if self.per_address[address] >= self.max_per_address:
            return 429, "Too many connections from your address.\n"
        return None

    def opened(self, address: str) -> None:
        self.total += 1
        self.per_address[address] += 1

    def closed(self, address: str) -> None:
        self.total -= 1
        self.per_address[address] -= 1
        if self.per_address[address] <= 0:
            del self.per_address[address]


class LogThrottle:
    """At most one WARNING per ``interval`` seconds for a condition that can recur thousands
    of times a second (refused sockets, ``accept`` failing with EMFILE); the next line says
    how many were held back. A log storm would cost the viewers more than the flood itself.
    """

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self.held_back = 0
        self.next_line = 0.0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now < self.next_line:
            self.held_back += 1
            return
        if self.held_back:
            message += " (and %d more like it since the last such line)"
            args = (*args, self.held_back)
        self.logger.warning(message, *args)
        self.held_back = 0
        self.next_line = now + self.interval
