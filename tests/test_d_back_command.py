"""d-back's command line on dback: ``python -m d_back`` and ``d_back`` with d-back's flags.

The end-to-end test is d-back's own server test - start ``python -m d_back``, connect to
``ws://localhost:PORT``, read ``server-list``, send ``connect``, read three more messages -
on a free port instead of 3000, so it runs beside a developer's own server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import websockets

import d_back
import d_back.server
from d_back.cli import parse_args
from dback_core.version import __version__ as core_version
from tests.support.http_get import fetch
from tests.support.json_log import Served, serving
from tests.support.ports import free_port

D_BACK_SCRIPT = Path(sys.executable).parent / "d_back"


def _environment() -> dict[str, str]:
    """This test run's plugin selection (only the mock), a fast mock, JSON log lines."""
    return {
        **os.environ,
        "DBACK_MOCK_INTERVAL": "0.2",
        "DBACK_LOG_FORMAT": "json",
    }


@asynccontextmanager
async def _d_back(*args: str) -> AsyncIterator[Served]:
    """``python -m d_back ARGS``, ended with SIGTERM as d-back's test ends the server: dback
    stops cleanly and exits 0."""
    async with serving(sys.executable, "-m", "d_back", *args, env=_environment()) as d_back:
        yield d_back
    log = "".join(d_back.lines)
    assert d_back.process.returncode == 0, log
    assert any(record["message"] == "stopped" for record in d_back.records()), log


async def test_d_backs_own_server_test_passes():
    port = free_port()
    async with _d_back("--port", str(port)) as d_back:
        assert d_back.port == port
        async with websockets.connect(f"ws://localhost:{port}") as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert first["type"] == "server-list"
            await ws.send(json.dumps({"type": "connect", "data": {"server": "default"}}))
            following = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(3)]
    assert following[0]["type"] == "server-join"
    assert following[0]["data"]["users"]
    assert {message["type"] for message in following[1:]} <= {"presence", "message"}
    # Warnings are for the person who can act on them: a d-back user never wrote a plugin.
    warnings = [r["message"] for r in d_back.records() if r["level"] == "WARNING"]
    assert not any("implements no hooks" in message for message in warnings), warnings


async def test_host_and_static_dir_flags(tmp_path):
    (tmp_path / "index.html").write_text("<title>my d-zone</title>")
    arguments = ("--host", "127.0.0.1", "--port", "0", "--static-dir", str(tmp_path))
    async with _d_back(*arguments) as d_back:
        page = (await fetch(d_back.port, "/")).text
    assert page == "<title>my d-zone</title>"


async def test_a_missing_static_dir_is_a_warning_and_the_status_page_is_served(tmp_path):
    missing = tmp_path / "no-such-dir"
    arguments = ("--host", "127.0.0.1", "--port", "0", "--static-dir", str(missing))
    async with _d_back(*arguments) as d_back:
        page = (await fetch(d_back.port, "/")).text
    warnings = [record for record in d_back.records() if record["level"] == "WARNING"]
    assert any(str(missing) in record["message"] for record in warnings), d_back.lines
    assert "<html" in page.lower()


async def test_a_static_dir_without_index_html_is_a_warning_naming_what_is_missing(tmp_path):
    """Like d-back, the command still serves the folder; the warning says why ``/`` is 404."""
    arguments = ("--host", "127.0.0.1", "--port", "0", "--static-dir", str(tmp_path))
    async with _d_back(*arguments) as d_back:
        status = (await fetch(d_back.port, "/")).status
    warnings = [r["message"] for r in d_back.records() if r["level"] == "WARNING"]
    assert any(f"{tmp_path} has no index.html" in message for message in warnings), warnings
    assert status == 404


def test_defaults_are_d_backs():
    args = parse_args([])
    assert (args.host, args.port, args.static_dir) == ("localhost", 3000, None)


def test_version_flag_names_both_versions():
    for command in ([sys.executable, "-m", "d_back"], [str(D_BACK_SCRIPT)]):
        answer = subprocess.run(
            [*command, "--version"], capture_output=True, text=True, timeout=60, check=True
        )
        assert answer.stdout.strip() == f"d_back {d_back.__version__} (dback-core {core_version})"


def test_help_lists_d_backs_flags():
    answer = subprocess.run(
        [str(D_BACK_SCRIPT), "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    for flag in ("--port", "--host", "--static-dir", "--version"):
        assert flag in answer.stdout


def test_a_taken_port_is_a_one_line_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        answer = subprocess.run(
            [sys.executable, "-m", "d_back", "--host", "127.0.0.1", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env=_environment(),
        )
    assert answer.returncode == 1
    assert f"d_back: cannot listen on 127.0.0.1:{port}" in answer.stderr
    assert "Traceback" not in answer.stderr


def test_d_backs_import_paths():
    """``from d_back import WebSocketServer`` (d-back's README) and ``d_back.server``."""
    assert d_back.WebSocketServer is d_back.server.WebSocketServer
    assert d_back.__version__


async def test_a_d_back_program_importing_from_the_package_runs(tmp_path, monkeypatch):
    """d-back's README style: ``from d_back import WebSocketServer``, ``static_dir`` as a
    string, an OAuth client id callback, and ``run_forever`` until the task is cancelled."""
    monkeypatch.setenv("DBACK_MOCK_INTERVAL", "0.2")
    (tmp_path / "index.html").write_text("<title>front end</title>")
    server = d_back.WebSocketServer(port=free_port(), host="127.0.0.1")
    server.static_dir = str(tmp_path)

    async def get_client_id(server_id: str) -> str:
        return f"client-of-{server_id}"

    server.on_get_client_id(get_client_id)
    running = asyncio.create_task(server.run_forever())
    try:
        while server.server is None or not server.server.ready:
            await asyncio.sleep(0.05)
        page = (await fetch(server.port, "/")).text
        order = (await fetch(server.port, "/api/plugins")).content()["order"]
        async with websockets.connect(f"ws://127.0.0.1:{server.port}") as ws:
            assert json.loads(await ws.recv())["type"] == "server-list"
            await ws.send(json.dumps({"type": "connect", "data": {"server": "default"}}))
            world = json.loads(await ws.recv())
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert page == "<title>front end</title>"
    assert world["type"] == "server-join"
    assert world["data"]["clientId"] == "client-of-232769614004748288"
    assert order[0] == "websocketserver-callbacks"  # the callbacks come first
    assert server.server is None  # run_forever stopped it on cancellation
