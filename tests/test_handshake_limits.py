"""The handshake phase is bounded: sockets count from accept, and running out of file
descriptors costs one log line, not a traceback storm that stalls the viewers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import signal
import sys

import pytest

from dback_core.testing import Client, running_server
from tests.support.json_log import serving_port

log = logging.getLogger(__name__)

ANOTHER_ADDRESS = ("127.0.0.2", 0)


async def _half_open(server, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``count`` TCP connections that never send a byte."""
    host, port = server.address
    return [await asyncio.open_connection(host, port) for _ in range(count)]


async def _answer_or_nothing(reader: asyncio.StreamReader, wait: float) -> bytes | None:
    """What the server sent before closing, or None while it keeps the socket open."""
    try:
        return await asyncio.wait_for(reader.read(), wait)
    except TimeoutError:
        return None
    except ConnectionResetError:
        return b""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("limit", "status"),
    [("max_connections_per_address", b"429"), ("max_connections", b"503")],
)
async def test_half_open_sockets_beyond_a_cap_are_closed_at_once(limit, status):
    async with running_server(open_timeout=120, **{limit: 20}) as server:
        sockets = await _half_open(server, 200)
        answers = await asyncio.gather(*(_answer_or_nothing(r, 5) for r, _ in sockets))
        refused = [answer for answer in answers if answer is not None]
        assert len(refused) == 180
        assert all(answer.startswith(b"HTTP/1.1 " + status) for answer in refused)
        assert server.counter.total == 20
        for _, writer in sockets:
            writer.close()
        await asyncio.sleep(0.2)
        assert server.counter.total == 0 and not server.counter.per_address


async def test_a_normal_client_connects_while_one_address_holds_half_open_sockets(monkeypatch):
    monkeypatch.setenv("DBACK_PLUGINS", "dback-mock")
    monkeypatch.setenv("DBACK_MOCK_INTERVAL", "0.05")
    async with running_server(max_connections_per_address=20, open_timeout=120) as server:
        sockets = await _half_open(server, 500)
        async with Client(server, local_addr=ANOTHER_ADDRESS) as viewer:
            joined = await viewer.join("default")
            assert joined["type"] == "server-join"
            await viewer.recv_type("presence")
        assert server.counter.per_address["127.0.0.1"] == 20
        for _, writer in sockets:
            writer.close()


@pytest.mark.slow
async def test_plain_http_requests_are_counted_while_they_are_open():
    async with running_server(max_connections_per_address=2, open_timeout=120) as server:
        host, port = server.address
        held = await _half_open(server, 2)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 429")
        for _, held_writer in held:
            held_writer.close()
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200")


async def test_refusals_are_logged_once_per_interval_not_per_socket(caplog):
    caplog.set_level(logging.WARNING, logger="dback_core")
    async with running_server(max_connections_per_address=1, open_timeout=120) as server:
        sockets = await _half_open(server, 300)
        await asyncio.gather(*(_answer_or_nothing(r, 5) for r, _ in sockets[1:]))
        for _, writer in sockets:
            writer.close()
    refusals = [r for r in caplog.records if r.getMessage().startswith("refused ")]
    assert len(refusals) == 1


def _serve_environment(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DBACK_PLUGINS": "dback-mock",
        "DBACK_DISABLE_PLUGINS": "",
        "DBACK_MOCK_INTERVAL": "0.02",
        "DBACK_LOG_FORMAT": "json",
        **extra,
    }


def _file_limit(soft: int, hard: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


#: ``dback serve`` after opening descriptors it never uses: something else (a plugin's
#: pools, say) holding what the server keeps in reserve, so that ``accept`` meets EMFILE.
SERVE_WITH_DESCRIPTORS_IN_USE = """
import os, sys
held = [os.open(os.devnull, os.O_RDONLY) for _ in range(int(sys.argv[1]))]
sys.argv = ["dback", "serve", "--port", "0"]
from dback_core.ops.cli import main
main()
"""


async def _start(limit: tuple[int, int], held: int = 0, **extra: str):
    command = ["-c", SERVE_WITH_DESCRIPTORS_IN_USE, str(held)]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        env=_serve_environment(**extra),
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_file_limit(*limit),
    )
    seen: list[str] = []
    port = await serving_port(process.stderr, seen)
    return process, port, seen


async def _stop(process, seen: list[str]) -> list[dict]:
    process.send_signal(signal.SIGTERM)
    _, rest = await asyncio.wait_for(process.communicate(), 30)
    text = "".join(seen) + rest.decode()
    return [json.loads(line) for line in text.splitlines()]


async def test_dback_serve_raises_the_open_file_soft_limit_to_the_hard_limit():
    process, _, seen = await _start((64, 512))
    try:
        with open(f"/proc/{process.pid}/limits") as limits:
            line = next(row for row in limits if row.startswith("Max open files"))
        assert line.split()[3:5] == ["512", "512"]
    finally:
        lines = await _stop(process, seen)
    messages = [line["message"] for line in lines]
    assert "open files: soft limit raised from 64 to the hard limit 512" in messages


async def _flood_while_watching(port: int, sockets: list, count: int) -> int:
    """Open ``count`` idle sockets while a viewer watches; the presence frames it got."""
    async with Client(f"ws://127.0.0.1:{port}") as viewer:
        await viewer.join("default")
        await viewer.recv_type("presence")
        for _ in range(count):
            sockets.append(await asyncio.open_connection("127.0.0.1", port))
        received = 0
        loop = asyncio.get_running_loop()
        until = loop.time() + 3
        while loop.time() < until:
            frame = await viewer.recv()
            received += frame["type"] == "presence"
        return received


@pytest.mark.slow
async def test_a_low_open_file_limit_lowers_the_connection_cap_instead_of_failing_accept():
    """100 descriptors allow 68 sockets; past that, sockets are refused, accept never fails."""
    process, port, seen = await _start(
        (100, 100), DBACK_MAX_CONNECTIONS_PER_ADDRESS="10000", DBACK_OPEN_TIMEOUT="120"
    )
    sockets: list = []
    try:
        received = await _flood_while_watching(port, sockets, 400)
        answers = await asyncio.gather(*(_answer_or_nothing(r, 5) for r, _ in sockets))
    finally:
        for _, writer in sockets:
            writer.close()
        lines = await _stop(process, seen)
    log.info("presence frames received in 3 s with 400 idle sockets: %d", received)
    assert received > 0
    refused = [answer for answer in answers if answer is not None]
    assert len(refused) == 400 - 67  # the viewer holds the 68th
    assert all(answer.startswith(b"HTTP/1.1 503") for answer in refused)
    messages = [line["message"] for line in lines]
    assert any(m.startswith("open files: the limit 100 allows 68 connections") for m in messages)
    assert not [m for m in messages if m.startswith("cannot accept")]
    assert not [line for line in lines if line.get("exception")]


@pytest.mark.slow
async def test_running_out_of_file_descriptors_logs_one_line_and_viewers_carry_on():
    """Descriptors held elsewhere leave the sockets a few: 400 idle sockets make ``accept``
    fail with EMFILE while a viewer that connected before keeps receiving presence updates."""
    process, port, seen = await _start(
        (100, 100), held=70, DBACK_MAX_CONNECTIONS_PER_ADDRESS="10000", DBACK_OPEN_TIMEOUT="120"
    )
    sockets: list = []
    try:
        received = await _flood_while_watching(port, sockets, 400)
    finally:
        for _, writer in sockets:
            writer.close()
        lines = await _stop(process, seen)
    accept_lines = [
        line for line in lines if line["message"].startswith("cannot accept connections")
    ]
    log.info(
        "presence frames received in 3 s while descriptors ran out: %d; log lines: %d in "
        "total, %d about accept",
        received,
        len(lines),
        len(accept_lines),
    )
    assert received > 0
    assert len(accept_lines) == 1
    assert "Too many open files" in accept_lines[0]["message"]
    assert not [line for line in lines if line.get("exception")]
    assert process.returncode == 0
