"""Graceful shutdown under signals, and a bounded soak: nothing is left behind."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import signal
import subprocess
import sys
import time
import tracemalloc

import pytest
import websockets.sync.client
from websockets.exceptions import ConnectionClosed

from dback_core.testing import Client, running_server
from tests.support.ports import free_port


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_closes_clients_with_1001_and_exits_0(signum, tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dback_core", "serve", "--port", str(port)],
        env={**os.environ, "DBACK_MOCK_INTERVAL": "0.05"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                connection = websockets.sync.client.connect(f"ws://127.0.0.1:{port}")
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        with connection:
            connection.recv(timeout=5)
            connection.send(json.dumps({"type": "connect", "data": {"server": None}}))
            started = time.monotonic()
            process.send_signal(signum)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    connection.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - started < 10
    finally:
        process.kill()
    assert "stopped" in process.stderr.read()


@pytest.mark.slow
async def test_soak_leaves_no_connection_behind_and_memory_returns(monkeypatch):
    monkeypatch.setenv("DBACK_MOCK_INTERVAL", "0.01")
    monkeypatch.setenv("DBACK_MOCK_SEED", "3")
    monkeypatch.setenv("DBACK_MOCK_PASSWORD", "pw")
    rng = random.Random(5)
    guilds = ["default", "docs", "repos", "dworld"]

    async def visitor():
        async with Client(server) as client:
            for _ in range(rng.randint(1, 4)):
                if rng.random() < 0.2:
                    await client.join("oauth", password="pw")
                else:
                    await client.join(rng.choice(guilds))
                await asyncio.sleep(rng.random() * 0.05)

    async def rounds(count):
        for _ in range(count):
            await asyncio.gather(*(visitor() for _ in range(25)))

    async with running_server() as server:
        await rounds(2)  # warm up caches and lazily created structures
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        await rounds(12)
        await asyncio.sleep(0.2)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert server.fanout.viewers == {}
        assert server.fanout.by_guild == {}
        assert server.counter.total == 0 and not server.counter.per_address
    assert after - before < 512 * 1024, f"grew by {after - before} bytes"
