"""Plain HTTP on the WebSocket port: version, health, static files and their safety."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import logging
import os
import socket
import time

import pytest

from dback_core.testing import running_server
from dback_core.version import __version__
from tests.support.http_get import fetch


@pytest.fixture
def static_root(tmp_path):
    root = tmp_path / "dist"
    root.mkdir()
    (root / "index.html").write_text("<h1>d-zone</h1>")
    (root / "js").mkdir()
    (root / "js" / "app.js").write_text("console.log('hi')")
    (tmp_path / "secret.txt").write_text("top secret")
    evil = tmp_path / "dist-evil"
    evil.mkdir()
    (evil / "steal.txt").write_text("outside")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    (root / "inside-link.js").symlink_to(root / "js" / "app.js")
    return root


async def test_version_and_health(mock_server):
    status, headers, body = await fetch(mock_server, "/api/version")
    assert status == 200 and json.loads(body) == {"version": __version__}
    assert headers["Content-Type"] == "application/json"
    assert (await fetch(mock_server, "/healthz"))[0] == 200
    status, _, body = await fetch(mock_server, "/readyz")
    assert status == 200 and json.loads(body) == {"ready": True}


async def test_static_files_are_served_with_their_type(static_root):
    async with running_server(static_dir=static_root) as server:
        index = await fetch(server, "/")
        script = await fetch(server, "/js/app.js?v=1")
        linked = await fetch(server, "/inside-link.js")
    assert index[0] == 200 and index[2] == b"<h1>d-zone</h1>"
    assert index[1]["Content-Type"].startswith("text/html")
    assert script[0] == 200 and b"console.log" in script[2]
    assert linked[0] == 200


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/js/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/..%5csecret.txt",
        "/escape",
        "/../dist-evil/steal.txt",
        "/%2e%2e/dist-evil/steal.txt",
        "/missing.html",
        "/index.html%00.js",
    ],
)
async def test_paths_outside_the_static_dir_are_refused(static_root, path):
    async with running_server(static_dir=static_root) as server:
        status, _, body = await fetch(server, path)
    assert status == 404
    assert b"secret" not in body and b"outside" not in body


async def test_unknown_paths_without_static_dir_are_404(mock_server):
    assert (await fetch(mock_server, "/nothing-here"))[0] == 404


def request(server, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    host, port = server.address
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request(method, path)
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        connection.close()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
@pytest.mark.parametrize("path", ["/", "/js/app.js", "/healthz", "/_dback/"])
async def test_only_get_and_head_are_answered(static_root, method, path):
    async with running_server(static_dir=static_root) as server:
        status, headers, body = await asyncio.to_thread(request, server, method, path)
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"
    assert b"d-zone" not in body and b"console.log" not in body


@pytest.mark.parametrize("path", ["/", "/js/app.js", "/healthz", "/_dback/status.css"])
async def test_head_answers_the_headers_of_get_without_a_body(static_root, path):
    async with running_server(static_dir=static_root) as server:
        got = await asyncio.to_thread(request, server, "GET", path)
        head = await asyncio.to_thread(request, server, "HEAD", path)
        raw_head = await asyncio.to_thread(_raw, server.address, f"HEAD {path}")
    assert head[0] == got[0] == 200
    assert head[1]["Content-Length"] == got[1]["Content-Length"] == str(len(got[2]))
    assert head[1]["Content-Type"] == got[1]["Content-Type"]
    assert head[2] == b""
    assert raw_head.endswith(b"\r\n\r\n")  # nothing after the headers on the wire


@pytest.mark.parametrize("with_static_dir", [False, True])
async def test_the_dback_path_serves_the_status_page(static_root, with_static_dir):
    options = {"static_dir": static_root} if with_static_dir else {}
    async with running_server(**options) as server:
        status, headers, body = await fetch(server, "/_dback/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b"<title>dback status</title>" in body


def _raw(address, request_line: str, pause: float = 0.0) -> bytes:
    """Everything the server sends for one request, read 64 KiB at a time with a pause
    between reads."""
    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        client.connect(address)
        client.sendall(f"{request_line} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = bytearray()
        while chunk := client.recv(64 * 1024):
            received += chunk
            time.sleep(pause)
        return bytes(received)


@pytest.mark.slow
async def test_a_slow_reader_gets_the_whole_file_after_the_open_timeout(tmp_path):
    content = os.urandom(12 * 1024 * 1024)
    (tmp_path / "bundle.js").write_bytes(content)
    async with running_server(static_dir=tmp_path, open_timeout=0.5) as server:
        started = time.monotonic()
        answer = await asyncio.to_thread(_raw, server.address, "GET /bundle.js", 0.005)
        took = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    logging.getLogger(__name__).info("12 MiB read slowly in %.1f s", took)
    assert head.startswith(b"HTTP/1.1 200")
    assert f"Content-Length: {len(content)}".encode() in head
    assert hashlib.sha256(body).digest() == hashlib.sha256(content).digest()


@pytest.mark.slow
async def test_a_download_that_stops_reading_is_dropped_with_a_log_line(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dback_core")
    (tmp_path / "big.bin").write_bytes(b"x" * (32 * 1024 * 1024))
    async with running_server(static_dir=tmp_path, static_stall_timeout=0.5) as server:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(server.address)
        client.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await _eventually(lambda: server.counter.total == 1)
        assert await _eventually(lambda: server.counter.total == 0)
        client.close()
    dropped = [r.getMessage() for r in caplog.records if "no progress" in r.getMessage()]
    assert len(dropped) == 1 and "/big.bin" in dropped[0] and "of 33554432 bytes" in dropped[0]


async def _eventually(condition, tries: int = 100) -> bool:
    for _ in range(tries):
        if condition():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_stopping_the_server_drops_downloads_under_way(tmp_path):
    (tmp_path / "big.bin").write_bytes(b"x" * (32 * 1024 * 1024))
    async with running_server(static_dir=tmp_path, static_stall_timeout=3600) as server:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(server.address)
        client.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await _eventually(lambda: server.static_files.downloads)
        await asyncio.wait_for(server.stop(), 10)
        assert server.counter.total == 0
        client.close()
