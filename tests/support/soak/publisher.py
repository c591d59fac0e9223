"""Which process publishes: the lease holder's id in Redis, its Redis connections (named
after that id, CLIENT LIST) and the process that owns one of their sockets (/proc). This
finds the publisher among a ``--workers`` node's workers too, which ``/api/plugins`` on
their shared port cannot tell apart."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from redis.asyncio import Redis


def _socket_inodes(local_port: int) -> set[str]:
    """Inodes of the 127.0.0.1 TCP sockets whose local port is ``local_port``."""
    inodes = set()
    wanted = f":{local_port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1].endswith(wanted):
                    inodes.add(fields[9])
    return inodes


def _owner(inodes: set[str], pids: list[int]) -> int | None:
    targets = {f"socket:[{inode}]" for inode in inodes}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                        return pid
    return None


async def publisher_pid(redis_port: int, prefix: str, pids: list[int]) -> int | None:
    """The pid among ``pids`` holding the lease ``<prefix>:lease`` now, if any."""
    redis = Redis(host="127.0.0.1", port=redis_port, decode_responses=True)
    try:
        holder = await redis.get(f"{prefix}:lease")
        if not holder:
            return None
        clients = await redis.client_list()
    finally:
        await redis.aclose()
    for client in clients:
        if client.get("name", "").endswith(f":{holder}"):
            port = int(client["addr"].rsplit(":", 1)[1])
            owner = _owner(_socket_inodes(port), pids)
            if owner is not None:
                return owner
    return None
