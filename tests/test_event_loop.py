"""``DBACK_EVENT_LOOP``: ``dback serve`` on asyncio's loop by default, on uvloop (the
``speed`` extra) when asked and installed, and the same bytes on the wire either way.

The real ``dback serve`` runs in a subprocess; "uvloop not installed" is a directory early on
``PYTHONPATH`` whose ``uvloop`` package fails to import, as a missing one does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import uvloop

from dback_core.ops.loops import loop_factory
from dback_core.plugin.errors import SettingsError
from dback_core.plugin.server_settings import Settings
from tests.support.json_log import serving_port

CONNECT = json.dumps({"type": "connect", "data": {"server": "default"}}).encode()


def test_auto_takes_uvloop_when_installed_and_asyncio_is_always_possible():
    assert loop_factory("auto") == ("uvloop", uvloop.new_event_loop)
    assert loop_factory("uvloop") == ("uvloop", uvloop.new_event_loop)
    assert loop_factory("asyncio") == ("asyncio", None)


def test_without_uvloop_auto_falls_back_and_uvloop_is_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert loop_factory("auto") == ("asyncio", None)
    with pytest.raises(SettingsError, match=r"DBACK_EVENT_LOOP.*not installed"):
        loop_factory("uvloop")


def test_an_unknown_loop_is_refused():
    with pytest.raises(SettingsError, match="DBACK_EVENT_LOOP"):
        Settings.from_env({"DBACK_EVENT_LOOP": "tokio"})
    assert Settings.from_env({}).event_loop == "asyncio"


@pytest.fixture
def no_uvloop(tmp_path) -> Path:
    hidden = tmp_path / "hidden" / "uvloop"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('uvloop is not installed')\n")
    return hidden.parent


def environment(loop: str | None, pythonpath: Path | None = None) -> dict[str, str]:
    """``dback serve`` with the seeded mock and ``DBACK_EVENT_LOOP=loop`` (None: unset)."""
    environ = {
        **{key: value for key, value in os.environ.items() if key != "DBACK_EVENT_LOOP"},
        "DBACK_PLUGINS": "dback-mock",
        "DBACK_MOCK_SEED": "5",
        "DBACK_MOCK_INTERVAL": "3600",  # no changes: both servers serve the same world
        **({"DBACK_EVENT_LOOP": loop} if loop else {}),
    }
    if pythonpath is not None:
        environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(pythonpath), os.environ.get("PYTHONPATH")])
        )
    return environ


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """One whole server frame as sent: header and payload, compressed or not."""
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    extended = {126: 2, 127: 8}.get(length, 0)
    more = await reader.readexactly(extended)
    if extended:
        length = int.from_bytes(more, "big")
    return head + more + await reader.readexactly(length)


async def server_list_and_join(port: int, offer_deflate: bool) -> tuple[bytes, bytes]:
    """The first two frames a client gets - the server list and, after connect, the join."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if offer_deflate else ""
    writer.write(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{offer}\r\n".encode()
    )
    response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert b" 101 " in response.split(b"\r\n", 1)[0]
    assert (b"permessage-deflate" in response) == offer_deflate
    listed = await asyncio.wait_for(read_frame(reader), 10)
    writer.write(bytes([0x81, 0x80 | len(CONNECT)]) + b"\0\0\0\0" + CONNECT)
    joined = await asyncio.wait_for(read_frame(reader), 10)
    writer.close()
    return listed, joined


async def frames_served(environ: dict[str, str]) -> tuple[str, list[tuple[bytes, bytes]]]:
    """The loop a real ``dback serve`` reports, and what a plain and a deflate client got."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dback_core",
        "serve",
        "--port",
        "0",
        "--log-format",
        "json",
        env=environ,
        stderr=asyncio.subprocess.PIPE,
    )
    seen: list[str] = []
    try:
        port = await serving_port(process.stderr, seen, timeout=30)
        frames = [await server_list_and_join(port, offer) for offer in (False, True)]
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(process.communicate(), 30)
    messages = [json.loads(line)["message"] for line in seen + rest.decode().splitlines()]
    (loop,) = [m.split(": ", 1)[1] for m in messages if m.startswith("event loop: ")]
    assert process.returncode == 0
    return loop, frames


@pytest.mark.slow
async def test_uvloop_and_asyncio_serve_byte_identical_frames(no_uvloop):
    on_uvloop = await frames_served(environment("auto"))
    on_asyncio = await frames_served(environment(None))  # the default
    uvloop_missing = await frames_served(environment("auto", no_uvloop))
    assert (on_uvloop[0], on_asyncio[0], uvloop_missing[0]) == ("uvloop", "asyncio", "asyncio")
    assert on_uvloop[1] == on_asyncio[1] == uvloop_missing[1]
    (plain_list, plain_join), (deflated_list, deflated_join) = on_uvloop[1]
    assert plain_list == deflated_list  # the server list always goes uncompressed
    assert b'"type":"server-join"' in plain_join
    assert deflated_join[0] & 0x40, "the join went compressed to the client offering deflate"
    assert len(deflated_join) < len(plain_join)


def test_dback_serve_names_a_missing_uvloop(no_uvloop):
    finished = subprocess.run(
        [sys.executable, "-m", "dback_core", "serve", "--port", "0"],
        env=environment("uvloop", no_uvloop),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode != 0
    assert "DBACK_EVENT_LOOP" in finished.stderr and "not installed" in finished.stderr
