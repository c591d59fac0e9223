"""Plain HTTP on the WebSocket port: version, health, static files and their safety."""

from __future__ import annotations

import http.client
import json

import pytest

from dback_core.testing import running_server
from dback_core.version import __version__


def get(server, path: str) -> tuple[int, dict[str, str], bytes]:
    host, port = server.address
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        connection.close()


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
    status, headers, body = await _get(mock_server, "/api/version")
    assert status == 200 and json.loads(body) == {"version": __version__}
    assert headers["Content-Type"] == "application/json"
    assert (await _get(mock_server, "/healthz"))[0] == 200
    status, _, body = await _get(mock_server, "/readyz")
    assert status == 200 and json.loads(body) == {"ready": True}


async def _get(server, path):
    import asyncio

    return await asyncio.to_thread(get, server, path)


async def test_static_files_are_served_with_their_type(static_root):
    async with running_server(static_dir=static_root) as server:
        index = await _get(server, "/")
        script = await _get(server, "/js/app.js?v=1")
        linked = await _get(server, "/inside-link.js")
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
        status, _, body = await _get(server, path)
    assert status == 404
    assert b"secret" not in body and b"outside" not in body


async def test_unknown_paths_without_static_dir_are_404(mock_server):
    assert (await _get(mock_server, "/nothing-here"))[0] == 404
