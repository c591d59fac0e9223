"""Static downloads cost a bounded amount of memory, whatever the file size and client count.

A real ``dback serve --static-dir`` in a subprocess, so its peak resident memory (VmHWM)
is its own; 60 clients fetch a 10 MB file at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sys

import pytest

from tests.support.json_log import serving

log = logging.getLogger(__name__)

CLIENTS = 60
SIZE = 10 * 1000 * 1000


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(row for row in status if row.startswith("VmHWM:"))
    return int(line.split()[1])


async def _download(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /bundle.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await reader.read()
    writer.close()
    return answer.partition(b"\r\n\r\n")[2]


@pytest.mark.slow
async def test_sixty_clients_reading_a_10_mb_file_cost_little_memory(tmp_path):
    content = os.urandom(SIZE)
    (tmp_path / "bundle.bin").write_bytes(content)
    (tmp_path / "index.html").write_text("<title>front end</title>")  # else refused
    command = [sys.executable, "-m", "dback_core", "serve", "--port", "0"]
    environ = {**os.environ, "DBACK_PLUGINS": "dback-mock", "DBACK_LOG_FORMAT": "json"}
    async with serving(*command, "--static-dir", str(tmp_path), env=environ) as dback:
        port = dback.port
        assert hashlib.sha256(await _download(port)).digest() == hashlib.sha256(content).digest()
        before = _peak_rss_kib(dback.process.pid)
        bodies = await asyncio.gather(*(_download(port) for _ in range(CLIENTS)))
        after = _peak_rss_kib(dback.process.pid)
    assert all(len(body) == SIZE for body in bodies)
    growth = (after - before) / 1024
    log.info(
        "peak RSS %.1f MiB before, %.1f MiB after %d clients read %d bytes: +%.1f MiB",
        before / 1024,
        after / 1024,
        CLIENTS,
        SIZE,
        growth,
    )
    assert growth < 64
