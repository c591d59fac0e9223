"""Shared compression read by a real browser's inflater (Debian's chromium via Playwright).

A d-zone-style page opens a WebSocket, connects, and keeps every frame it reads. Two pages
watch the same guild while presences stream in; one joins late and switches guilds and back,
the other joins its guild again, so the shared stream is reset, left and re-entered. Every
page must read exactly what the server sent it. Chromium offers permessage-deflate and
compresses what it sends, so both directions are exercised.
"""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import async_playwright

from dback_core.plugin.events import Presence
from dback_core.testing import running_server
from dback_core.wire import fanout as fanout_module
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.test_deflate import World

pytestmark = pytest.mark.browser

GUILD = "1"
MEMBERS = 2000
WAIT_S = 15.0

PAGE = """<!doctype html><title>d-zone-like</title><script>
window.received = [];
const socket = new WebSocket(`ws://${location.host}/`);
window.socket = socket;
socket.onopen = () => socket.send(JSON.stringify({type: "connect", data: {server: "one"}}));
socket.onmessage = (event) => window.received.push(JSON.parse(event.data));
</script>"""


@pytest.fixture
async def browser():
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def frames_of(page, predicate, count: int) -> list[dict]:
    """The page's frames once ``count`` of them satisfy ``predicate``."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        received = await page.evaluate("window.received")
        if sum(1 for frame in received if predicate(frame)) >= count:
            return received
        assert asyncio.get_running_loop().time() < deadline, received[-3:]
        await asyncio.sleep(0.05)


def is_join(frame: dict) -> bool:
    return frame["type"] == "server-join"


def presences(received: list[dict]) -> list[str]:
    return [
        f"{frame['data']['uid']}:{frame['data']['status']}"
        for frame in received
        if frame["type"] == "presence"
    ]


async def publish(server, start: int, count: int) -> list[str]:
    sent = []
    for number in range(start, start + count):
        status = ["idle", "dnd"][number % 2]
        await server.publish(Presence(GUILD, str(number), status, f"name {number}"))
        sent.append(f"{number}:{status}")
        if number % 10 == 0:
            await asyncio.sleep(0.01)  # several loop turns, several resets
    return sent


async def test_chromium_reads_shared_compressed_streams(tmp_path, browser, monkeypatch):
    monkeypatch.setattr(fanout_module, "SYNC_INTERVAL", 0.05)
    (tmp_path / "index.html").write_text(PAGE)
    async with running_server(
        [("world", World(MEMBERS))], {"DBACK_PLUGINS": ""}, static_dir=tmp_path
    ) as server:
        host, port = server.address
        early = await browser.new_page()
        await early.goto(f"http://{host}:{port}/")
        await frames_of(early, is_join, 1)
        assert "client_no_context_takeover" in await early.evaluate("window.socket.extensions")
        first = await publish(server, 0, 60)

        late = await browser.new_page()
        await late.goto(f"http://{host}:{port}/")
        await frames_of(late, is_join, 1)
        second = await publish(server, 60, 60)

        await late.evaluate(
            'window.socket.send(JSON.stringify({type: "connect", data: {server: "two"}}))'
        )
        await frames_of(late, is_join, 2)
        await late.evaluate(
            'window.socket.send(JSON.stringify({type: "connect", data: {server: "one"}}))'
        )
        await frames_of(late, is_join, 3)
        third = await publish(server, 120, 30)  # a reset admits the late page again

        monkeypatch.setattr(fanout_module, "SYNC_INTERVAL", 3600.0)
        await frames_of(early, lambda f: f["type"] == "presence", 150)
        await early.evaluate(  # a join of its own while it shares the guild's stream
            'window.socket.send(JSON.stringify({type: "connect", data: {server: "one"}}))'
        )
        await frames_of(early, is_join, 2)
        assert len(server.fanout.streams[GUILD].behind) == 1
        fourth = await publish(server, 150, 30)  # no reset: the late page shares, early waits

        monkeypatch.setattr(fanout_module, "SYNC_INTERVAL", 0.0)
        fifth = await publish(server, 180, 30)

        early_frames = await frames_of(early, lambda f: f["type"] == "presence", 210)
        late_frames = await frames_of(late, lambda f: f["type"] == "presence", 150)
        assert presences(early_frames) == first + second + third + fourth + fifth
        assert presences(late_frames) == second + third + fourth + fifth
        joins = [frame for frame in late_frames if is_join(frame)]
        assert [len(join["data"]["users"]) for join in joins] == [MEMBERS] * 3
        assert [join["data"]["serverName"] for join in joins] == ["One", "Two", "One"]
        assert early_frames[0]["type"] == "server-list"
        viewers = list(server.fanout.viewers.values())
        assert len(viewers) == 2 and all(v.deflate and v.deflate.history for v in viewers)
        assert len(server.fanout.streams[GUILD].synced) == 2
