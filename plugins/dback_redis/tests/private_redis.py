"""A redis-server of a test's own (no persistence), so that killing it hurts nobody else."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess

from redis.asyncio import Redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test's own, so that killing it hurts nobody else."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        arguments = ["--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        self.process = subprocess.Popen(
            [binary, *arguments, "--appendonly", "no"], stdout=subprocess.DEVNULL
        )
        client = Redis.from_url(self.url)
        try:
            for _ in range(100):
                with contextlib.suppress(OSError, ConnectionError, Exception):
                    if await client.ping():
                        return
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        raise RuntimeError("the private redis-server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None
