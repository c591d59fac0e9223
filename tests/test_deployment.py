"""The deployment examples work: systemd accepts the units, nginx proxies TLS and WebSocket.

The files in docs/examples/ are the ones shown in docs/deployment.md. nginx runs for real on
loopback ports with a throw-away self-signed certificate, in front of a real dback; a client
connects through it with ``wss://`` and receives live events, and the operator's paths
(metrics, plugin settings, readiness) are refused however their path is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import re
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dback_core.ops.workers import STOP_GRACE
from dback_core.plugin.events import Presence
from dback_core.testing import Client, running_server
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
GUIDE = (ROOT / "docs" / "deployment.md").read_text()
EXAMPLE_DBACK = "/opt/dback/.venv/bin/dback"
DEFAULT_GUILD = "232769614004748288"


UNITS = ["dback.service", "dback-workers.service", "dback-edge@.service"]
#: Where the guide's "Install" puts the checkout, which the units' Documentation= points into.
INSTALLED_SOURCE = "/opt/dback/src/"


@pytest.mark.parametrize("name", [*UNITS, "nginx-dback.conf"])
def test_the_guide_shows_the_example_files(name):
    assert (EXAMPLES / name).read_text() in GUIDE


@pytest.mark.parametrize("name", UNITS)
def test_the_units_documentation_is_a_file_the_install_steps_put_there(name):
    links = re.findall(r"^Documentation=(\S+)$", (EXAMPLES / name).read_text(), re.MULTILINE)
    for link in links:
        assert link.startswith(f"file://{INSTALLED_SOURCE}"), link
        assert (ROOT / link.removeprefix(f"file://{INSTALLED_SOURCE}")).is_file(), link
    install = GUIDE.split("## Install", 1)[1].split("\n## ", 1)[0]
    assert f"sudo cp -r . {INSTALLED_SOURCE.rstrip('/')}" in install


def test_the_workers_unit_stops_the_parent_only_and_outwaits_it():
    unit = (EXAMPLES / "dback-workers.service").read_text()
    assert "ExecStart=/opt/dback/.venv/bin/dback serve --workers 0\n" in unit
    assert "\nKillMode=mixed\n" in unit
    timeout = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE)[1])
    assert timeout > STOP_GRACE


@pytest.mark.system
@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("dback.service", "dback.service"),
        ("dback-workers.service", "dback-workers.service"),
        ("dback-edge@.service", "dback-edge@3001.service"),
    ],
)
def test_systemd_accepts_the_units(tmp_path, name, unit):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is required: apt-get install -y systemd"
    dback = str(Path(sys.executable).with_name("dback"))
    assert Path(dback).exists(), "the dback command must be installed beside this Python"
    text = (EXAMPLES / name).read_text()
    assert EXAMPLE_DBACK in text
    (tmp_path / unit).write_text(text.replace(EXAMPLE_DBACK, dback))
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def _substitute(text: str, old: str, new: str) -> str:
    assert old in text, f"the nginx example no longer contains {old!r}"
    return text.replace(old, new)


def _site(tls_port: int, http_port: int, dback_port: int, certs: Path) -> str:
    """The example with loopback ports and the test's certificate, nothing else changed."""
    text = (EXAMPLES / "nginx-dback.conf").read_text()
    text = _substitute(text, "listen 443 ssl;", f"listen 127.0.0.1:{tls_port} ssl;")
    text = _substitute(text, "listen 80;", f"listen 127.0.0.1:{http_port};")
    text = _substitute(text, "server 127.0.0.1:3000;", f"server 127.0.0.1:{dback_port};")
    text = _substitute(text, "/etc/ssl/dback/fullchain.pem", str(certs / "cert.pem"))
    return _substitute(text, "/etc/ssl/dback/privkey.pem", str(certs / "key.pem"))


def _main_config(workdir: Path) -> str:
    temp = {name: workdir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    return f"""
daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {workdir}/dback.conf;
}}
"""


def _self_signed(certs: Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "openssl is required: apt-get install -y openssl"
    subprocess.run(
        [
            openssl, "req", "-x509", "-nodes", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(certs / "key.pem"), "-out", str(certs / "cert.pem"),
            "-days", "1", "-subj", "/CN=localhost",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


async def _wait_listening(port: int, process: subprocess.Popen, workdir: Path) -> None:
    for _ in range(300):
        assert process.poll() is None, (workdir / "error.log").read_text()
        with contextlib.suppress(OSError):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("nginx did not start listening")


def _fetch(url: str, context: ssl.SSLContext | None = None) -> tuple[int, str, str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    handlers = [NoRedirect(), urllib.request.HTTPSHandler(context=context)]
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=10) as answer:
            return answer.status, answer.read().decode(), answer.headers.get("Location", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), error.headers.get("Location", "")


@pytest.fixture
async def proxied(tmp_path, monkeypatch):
    """A mock-serving dback behind nginx with the example configuration."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is required: apt-get install -y nginx-light"
    _self_signed(tmp_path)
    monkeypatch.setenv("DBACK_PLUGINS", "dback-mock")
    monkeypatch.setenv("DBACK_MOCK_INTERVAL", "3600")
    monkeypatch.setenv("DBACK_MOCK_SEED", "11")
    async with running_server() as server:
        tls_port, http_port = free_port(), free_port()
        (tmp_path / "dback.conf").write_text(
            _site(tls_port, http_port, server.address[1], tmp_path)
        )
        (tmp_path / "nginx.conf").write_text(_main_config(tmp_path))
        process = subprocess.Popen(
            [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await _wait_listening(tls_port, process, tmp_path)
            await _wait_listening(http_port, process, tmp_path)
            yield server, tls_port, http_port
        finally:
            process.terminate()
            process.wait(timeout=30)


def _insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.mark.system
async def test_websocket_and_http_through_nginx_with_tls(proxied):
    server, tls_port, http_port = proxied
    context = _insecure_context()
    async with Client(f"wss://127.0.0.1:{tls_port}/", timeout=15, ssl=context) as client:
        assert client.server_list[DEFAULT_GUILD]["name"] == "D-World"
        world = await client.join("dworld")
        assert world["type"] == "server-join"
        user = next(iter(world["data"]["users"].values()))
        status = "idle" if user["status"] == "dnd" else "dnd"  # a change, so it is sent
        await server.publish(Presence(DEFAULT_GUILD, user["uid"], status))
        change = await client.recv_type("presence")
        assert change["data"]["uid"] == user["uid"]
        assert change["data"]["status"] == status
        assert len(server.connections) == 1

    base = f"https://127.0.0.1:{tls_port}"
    status, body, _ = await asyncio.to_thread(_fetch, f"{base}/healthz", context)
    assert (status, body) == (200, '{"status": "ok"}')
    status, body, _ = await asyncio.to_thread(_fetch, f"{base}/", context)
    assert status == 200
    assert "<title>dback status</title>" in body
    status, body, _ = await asyncio.to_thread(_fetch, f"{base}/api/version", context)
    assert status == 200 and "version" in body

    status, _, location = await asyncio.to_thread(_fetch, f"http://127.0.0.1:{http_port}/x")
    assert status == 301
    assert location == "https://127.0.0.1/x"


def _raw_get(port: int, path: str, context: ssl.SSLContext) -> tuple[int, str]:
    """GET ``path`` exactly as written (no client-side normalising) over TLS."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, answer.read().decode(errors="replace")
    finally:
        connection.close()


#: The operator's paths, and ways of writing them that name the same path to nginx.
PRIVATE_PATHS = [
    "/metrics",
    "/api/plugins",
    "/readyz",
    "//metrics",
    "/%6detrics",
    "/x/../readyz",
    "/api//plugins",
    "/./api/plugins",
    "/api/%70lugins",
    "/readyz?full=1",
    "/METRICS/../metrics",
]


@pytest.mark.system
async def test_nginx_refuses_the_operators_paths_however_written(proxied):
    """What dback answers on these paths (plugin settings, errors, metrics) stays behind the
    proxy: each is 403 from nginx, never dback's answer."""
    server, tls_port, _http_port = proxied
    context = _insecure_context()
    direct = {
        path: await asyncio.to_thread(_fetch_direct, server, path) for path in PRIVATE_PATHS[:3]
    }
    assert all(status in (200, 503) for status in direct.values()), direct
    for path in PRIVATE_PATHS:
        status, body = await asyncio.to_thread(_raw_get, tls_port, path, context)
        assert status == 403, (path, status, body[:200])
        assert "dback_" not in body and "plugins" not in body and "waiting" not in body


def _fetch_direct(server, path: str) -> int:
    """The status dback itself answers ``path`` with, around the proxy."""
    host, port = server.address
    return _fetch(f"http://{host}:{port}{path}")[0]
