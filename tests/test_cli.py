"""The ``dback`` command as users run it: real subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets.sync.client

from tests.support.ports import free_port

BIN = Path(sys.executable).parent


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "dback"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_version():
    result = run("--version")
    assert result.returncode == 0 and "dback, version" in result.stdout


def test_plugins_json_lists_the_mock_with_hooks_and_order():
    result = run("plugins", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["order"] == ["dback-mock"]
    mock = next(entry for entry in data["plugins"] if entry["name"] == "dback-mock")
    assert mock["status"] == "active"
    assert mock["hooks"] == ["event_sources", "get_server_data", "get_user_data"]


@pytest.mark.slow
def test_plugins_table_shows_disabled_plugins():
    result = run("plugins", env={"DBACK_DISABLE_PLUGINS": "dback-mock"})
    assert result.returncode == 0
    assert "dback-mock" in result.stdout and "disabled" in result.stdout


def test_a_load_error_is_reported_once_per_command():
    result = run("plugins", env={"DBACK_PLUGINS": "no-such-plugin,dback-mock"})
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("no installed plugin is named 'no-such-plugin'") == 1
    assert "no-such-plugin : failed" in result.stdout


def test_strict_mode_with_an_unknown_plugin_fails_clearly():
    result = run("plugins", env={"DBACK_PLUGINS": "dback-nope", "DBACK_STRICT_PLUGINS": "1"})
    assert result.returncode != 0
    assert "dback-nope" in result.stderr


def test_serve_runs_until_sigterm_and_logs_the_plugins_in_order():
    port = free_port()
    env = {**os.environ, "DBACK_MOCK_INTERVAL": "0.05"}
    process = subprocess.Popen(
        [sys.executable, "-m", "dback_core", "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        connection = _connect(port)
        with connection:
            assert json.loads(connection.recv(timeout=5))["type"] == "server-list"
            connection.send(json.dumps({"type": "connect", "data": {"server": None}}))
            assert json.loads(connection.recv(timeout=5))["type"] == "server-join"
        process.terminate()
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
    log = process.stderr.read()
    assert "plugins: dback-mock-" in log
    assert "server-join" not in log


def test_serve_reports_a_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--port", str(port))
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def _connect(port: int):
    deadline = time.monotonic() + 20
    while True:
        try:
            return websockets.sync.client.connect(f"ws://127.0.0.1:{port}")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
