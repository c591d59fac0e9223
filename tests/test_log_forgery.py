"""Log lines cannot be forged: what a client puts in its request URL (escape sequences,
control characters) and what a plugin provides (a guild id or name, a member id, holding
line breaks, C1 controls, U+2028 and bidi overrides) reaches a real ``dback serve``'s log
escaped - each record one line in text logs, every character encoded in JSON lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys

import pytest

from dback_core.testing import Client
from tests.support.installed_plugins import install_plugin
from tests.support.outputs import Dback, environment

#: A request path: a screen clear, red text, a bell, a backspace and DEL (a request line is
#: ASCII, so this is what a client can send there).
FORGED_PATH = "/big.bin?q=\x1b[2J\x1b[31mFORGED-BY-URL\x1b[0m\x07\x08\x7f\x0b\x0c"
#: A fake record after a line break, in a guild key, a guild name and a member id.
FAKE_LINE = "2031-01-01 00:00:00,000 ERROR dback_core: forged"
PLUGIN = f"""
    import logging

    from dback_core import hookimpl

    log = logging.getLogger("tp_forge")
    KEY = "4242\\n{FAKE_LINE} by id"
    NAME = (
        "Vault\\r\\n{FAKE_LINE} by name \\x1b]0;title\\x07\\x85\\u2028\\u2029\\u202eevil\\u2066"
        + "x" * 120
    )


    @hookimpl
    def get_server_data():
        log.info("serving guild %s", NAME)  # as a provider may announce what it serves
        return {{KEY: {{"id": "vault", "name": NAME, "default": True}}}}


    @hookimpl
    def get_user_data(server_id):
        return {{"1": {{"uid": "1\\n{FAKE_LINE} by uid", "username": "", "status": "online"}}}}
"""
#: What no log line may hold raw: C0 controls but the line's end, DEL, C1, U+2028/2029 and
#: the bidi controls.
RAW = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
TEXT_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) \S+: ")


def _stall(port: int) -> socket.socket:
    """Ask for the big file with ``FORGED_PATH`` and read nothing: the download stalls."""
    client = socket.create_connection(("127.0.0.1", port))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.sendall(f"GET {FORGED_PATH} HTTP/1.1\r\nHost: dback\r\n\r\n".encode("ascii"))
    return client


async def _forged_log(tmp_path, log_format: str) -> str:
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "tp-forge", PLUGIN)
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>client</title>")
    with open(static / "big.bin", "wb") as big:
        big.truncate(256 * 1024 * 1024)  # sparse: more than any socket buffer holds
    env = environment(
        DBACK_PLUGINS="tp-forge",
        DBACK_LOG_LEVEL="DEBUG",
        DBACK_LOG_FORMAT=log_format,
        DBACK_STATIC_STALL_TIMEOUT="1",
        PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        PYTHONIOENCODING="utf-8",  # non-ASCII reaches the log as it is, not as \u escapes
    )
    command = [sys.executable, "-m", "dback_core", "serve", "--static-dir", str(static)]
    async with Dback(env, command) as dback:
        async with Client(f"ws://127.0.0.1:{dback.port}") as client:
            joined = await client.join("vault")  # asks the plugin for the members
            assert joined["type"] == "server-join", joined
        stalled = await asyncio.to_thread(_stall, dback.port)
        try:
            await dback.wait_for_line("no progress for")
        finally:
            stalled.close()
    return dback.log


@pytest.mark.slow
async def test_text_logs_escape_what_clients_and_plugins_send(tmp_path):
    log = await _forged_log(tmp_path, "text")
    assert not RAW.search(log), [line for line in log.splitlines() if RAW.search(line)]
    lines = log.splitlines()
    assert all(TEXT_RECORD.match(line) for line in lines), [
        line for line in lines if not TEXT_RECORD.match(line)
    ]
    assert not any("FORGED" in line and not line.startswith("20") for line in lines)
    (stall,) = [line for line in lines if "no progress for" in line]
    assert "q=\\x1b[2J\\x1b[31mFORGED-BY-URL\\x1b[0m\\x07\\x08\\x7f\\x0b\\x0c" in stall
    assert any(f"4242\\n{FAKE_LINE} by id" in line for line in lines), log
    assert any(f"1\\n{FAKE_LINE} by uid" in line for line in lines), log
    named = [line for line in lines if "serving guild Vault" in line]
    assert named and f"Vault\\r\\n{FAKE_LINE} by name \\x1b]0;title\\x07\\x85" in named[0]
    assert "\\u2028\\u2029\\u202eevil\\u2066" in named[0]


@pytest.mark.slow
async def test_json_logs_encode_what_clients_and_plugins_send(tmp_path):
    log = await _forged_log(tmp_path, "json")
    assert not RAW.search(log), [line for line in log.splitlines() if RAW.search(line)]
    records = [json.loads(line) for line in log.splitlines()]
    messages = [record["message"] for record in records]
    (stall,) = [message for message in messages if "no progress for" in message]
    assert FORGED_PATH in stall  # encoded on the wire, exact once decoded
    assert any(f"4242\n{FAKE_LINE} by id" in message for message in messages)
    (named,) = [message for message in messages if message.startswith("serving guild Vault")]
    assert "\x85\u2028\u2029\u202eevil\u2066" in named
