"""``dback serve`` in a process of its own with the Redis plugin (imported by name by the
Redis plugin's tests and its failover bench, as ``sentinel_cluster`` is)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from dback_core.loading.plugins import ENTRY_POINT_GROUP, normalize_name


def other_plugins(kept: Iterable[str] = ("dback-redis", "dback-mock")) -> str:
    """Every installed plugin but ``kept``, comma-separated: ``DBACK_DISABLE_PLUGINS`` for a
    process that may load only those, whatever else is installed."""
    names = {normalize_name(ep.name) for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return ",".join(sorted(names - set(kept)))


class DbackProcess:
    """``dback serve`` in its own process with the Redis plugin, on a port the OS picks."""

    def __init__(self, prefix: str, url: str, role: str, log_path: Path, **extra_env: str) -> None:
        # None of the shell's DBACK_* settings: the process has only those given here.
        inherited = {
            name: value for name, value in os.environ.items() if not name.startswith("DBACK_")
        }
        env = {
            **inherited,
            "DBACK_REDIS_URL": url,
            "DBACK_REDIS_ROLE": role,
            "DBACK_REDIS_PREFIX": prefix,
            "DBACK_DISABLE_PLUGINS": other_plugins(),
            "DBACK_PORT": "0",
            **extra_env,
        }
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dback_core", "serve", "--port", "0"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = ""

    async def ready(self, timeout: float = 30.0) -> str:
        """The ws:// URL once the process logs that it is serving."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            found = re.search(r"on (ws://[\d.]+:\d+)", self.log_path.read_text())
            if found:
                self.url = found.group(1)
                return self.url
            if self.process.poll() is not None:
                raise RuntimeError("dback exited:\n" + self.log_path.read_text())
            await asyncio.sleep(0.05)
        raise TimeoutError("dback did not start:\n" + self.log_path.read_text())

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def api(self, path: str) -> Any:
        """The JSON at ``path`` of this process's HTTP side."""
        host, port = self.url.removeprefix("ws://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return json.loads(raw.partition(b"\r\n\r\n")[2])

    async def redis_detail(self) -> str:
        """What ``/api/plugins`` says of the Redis plugin: its role, Redis and prefix."""
        described = await self.api("/api/plugins")
        entry = next(e for e in described["plugins"] if e["name"] == "dback-redis")
        return entry["detail"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused process cannot terminate
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
