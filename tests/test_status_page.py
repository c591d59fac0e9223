"""The status page in a real headless browser (Debian's chromium driven by Playwright).

The page is served by a real server with the installed mock plugin; changes are pushed
through ``server.publish`` exactly as a plugin's event source would, and must show up on the
page. A screenshot is kept under ``test-artifacts/`` for people to look at.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from playwright.async_api import async_playwright, expect

from dback_core import hookimpl
from dback_core.ops.cli import cli
from dback_core.plugin.events import Message, Presence
from dback_core.plugin.health import UNAVAILABLE
from dback_core.testing import Client, running_server
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.http_get import fetch

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
DEFAULT_GUILD = "232769614004748288"
#: Generous: waiting for the browser, never a claim about speed.
WAIT_MS = 15_000


@pytest.fixture
async def quiet_mock_server(monkeypatch):
    """The mock with a simulation too slow to interfere: only the test changes the world."""
    monkeypatch.setenv("DBACK_PLUGINS", "dback-mock")
    monkeypatch.setenv("DBACK_MOCK_INTERVAL", "3600")
    monkeypatch.setenv("DBACK_MOCK_SEED", "7")
    monkeypatch.setenv("DBACK_MOCK_PASSWORD", "sesame")
    async with running_server() as server:
        yield server


@pytest.fixture
async def page():
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), (
        "Debian's chromium is required: apt-get install -y chromium"
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield await browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            await browser.close()


def _url(server) -> str:
    host, port = server.address
    return f"http://{host}:{port}/"


@pytest.mark.browser
async def test_page_shows_members_presence_and_chat(quiet_mock_server, page):
    server = quiet_mock_server
    guild = await server.directory.guild(DEFAULT_GUILD)
    users = json.loads(guild.users_json())
    await page.goto(_url(server))

    await expect(page.locator("#connection")).to_have_text("open", timeout=WAIT_MS)
    await expect(page.locator("#guild-name")).to_have_text("D-World", timeout=WAIT_MS)
    await expect(page.locator(".member")).to_have_count(len(users), timeout=WAIT_MS)
    (viewer,) = server.fanout.viewers.values()
    assert viewer.deflate is not None  # chromium offered deflate: the page reads it compressed
    for user in list(users.values())[:5]:
        card = page.locator(f'.member[data-uid="{user["uid"]}"]')
        await expect(card.locator(".name")).to_have_text(user["username"])
        await expect(card.locator(".dot")).to_have_attribute("data-status", user["status"])

    target = next(iter(users.values()))
    new_status = "dnd" if target["status"] != "dnd" else "idle"
    await server.publish(Presence(DEFAULT_GUILD, target["uid"], new_status))
    dot = page.locator(f'.member[data-uid="{target["uid"]}"] .dot')
    await expect(dot).to_have_attribute("data-status", new_status, timeout=WAIT_MS)

    await server.publish(Message(DEFAULT_GUILD, target["uid"], "hello from the status test"))
    line = page.locator("#chat li").filter(has_text="hello from the status test")
    await expect(line).to_have_count(1, timeout=WAIT_MS)
    await expect(line.locator(".who")).to_have_text(target["username"])

    newcomer = Presence(DEFAULT_GUILD, "999000111", "online", "newcomer", "#ff8800")
    await server.publish(newcomer)
    card = page.locator('.member[data-uid="999000111"]')
    await expect(card.locator(".name")).to_have_text("newcomer", timeout=WAIT_MS)
    await expect(card.locator(".name")).to_have_css("color", "rgb(255, 136, 0)")

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "status-page.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 1000


@pytest.mark.browser
async def test_page_lists_plugins_like_the_cli(quiet_mock_server, page):
    """``dback plugins --json`` and the page show the same names, versions and order."""
    server = quiet_mock_server
    listed = CliRunner().invoke(cli, ["plugins", "--json"])
    assert listed.exit_code == 0, listed.output
    expected = json.loads(listed.output)
    assert expected["order"] == ["dback-mock"]
    await page.goto(_url(server))
    items = page.locator("#plugins .plugin")
    await expect(items).to_have_count(len(expected["order"]), timeout=WAIT_MS)
    versions = {entry["name"]: entry["version"] for entry in expected["plugins"]}
    assert await items.evaluate_all("nodes => nodes.map(n => n.dataset.name)") == expected["order"]
    for index, name in enumerate(expected["order"]):
        await expect(items.nth(index).locator(".label")).to_have_text(f"{name} {versions[name]}")


@pytest.mark.browser
async def test_switching_guilds_and_logging_in_to_a_passworded_guild(quiet_mock_server, page):
    server = quiet_mock_server
    await page.goto(_url(server))
    await expect(page.locator("#guild-name")).to_have_text("D-World", timeout=WAIT_MS)
    await page.select_option("#guilds", "docs")
    await expect(page.locator("#guild-name")).to_have_text("Docs (WIP)", timeout=WAIT_MS)
    docs = json.loads((await server.directory.guild("482241773318701056")).users_json())
    await expect(page.locator(".member")).to_have_count(len(docs), timeout=WAIT_MS)
    await page.select_option("#guilds", "oauth")
    await expect(page.locator("#error")).to_contain_text("authentication", timeout=WAIT_MS)
    await expect(page.locator("#login")).to_be_visible()
    await page.fill("#password", "wrong")
    await page.click("#login button")
    await expect(page.locator("#error")).to_contain_text("failed", timeout=WAIT_MS)
    await page.fill("#password", "sesame")
    await page.click("#login button")
    await expect(page.locator("#guild-name")).to_have_text(
        "OAuth2 Protected Server", timeout=WAIT_MS
    )
    await expect(page.locator("#error")).to_be_hidden()
    await expect(page.locator("#login")).to_be_hidden()
    oauth = json.loads((await server.directory.guild("123456789012345678")).users_json())
    await expect(page.locator(".member")).to_have_count(len(oauth), timeout=WAIT_MS)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html; charset=utf-8"),
        ("/_dback/status.css", "text/css; charset=utf-8"),
        ("/_dback/status.js", "text/javascript; charset=utf-8"),
    ],
)
async def test_the_page_loads_nothing_from_elsewhere(quiet_mock_server, path, content_type):
    """No CDN, no web font, no absolute URL: the page works on a machine without internet."""
    status, headers, body = await fetch(quiet_mock_server, path)
    assert status == 200
    assert headers["Content-Type"] == content_type
    assert re.search(rb"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", body, re.IGNORECASE) is None


async def test_with_a_static_dir_the_page_moves_aside(tmp_path, monkeypatch):
    (tmp_path / "index.html").write_text("<title>d-zone</title>")
    monkeypatch.setenv("DBACK_PLUGINS", "dback-mock")
    async with running_server(static_dir=tmp_path) as server:
        front = await fetch(server, "/")
        status_page = await fetch(server, "/_dback/index.html")
        unknown = await fetch(server, "/_dback/secret.py")
        escape = await fetch(server, "/_dback/../pyproject.toml")
    assert front[0] == 200
    assert front[2] == b"<title>d-zone</title>"
    assert status_page[0] == 200
    assert b"<title>dback status</title>" in status_page[2]
    assert unknown[0] == 404
    assert escape[0] == 404


@pytest.mark.browser
async def test_offline_names_are_readable_and_a_legend_explains_the_dots(quiet_mock_server, page):
    server = quiet_mock_server
    guild = await server.directory.guild(DEFAULT_GUILD)
    uid = next(iter(json.loads(guild.users_json())))
    await page.goto(_url(server))
    await expect(page.locator(".member")).not_to_have_count(0, timeout=WAIT_MS)
    await server.publish(Presence(server_id=DEFAULT_GUILD, uid=uid, status="offline"))
    name = page.locator(f'.member[data-uid="{uid}"][data-status="offline"] .name')
    await expect(name).to_be_visible(timeout=WAIT_MS)
    ratio = await name.evaluate(CONTRAST_JS)
    print(f"offline name contrast {ratio:.2f}:1")
    assert ratio >= 4.5
    legend = page.locator("#legend li")
    await expect(legend).to_have_text(["online", "idle", "do not disturb", "offline"])
    statuses = await page.locator("#legend .dot").evaluate_all(
        "dots => dots.map(d => d.dataset.status)"
    )
    assert statuses == ["online", "idle", "dnd", "offline"]


#: The WCAG contrast ratio of an element's text against the panel behind its card, with the
#: element's own opacity applied to its colour.
CONTRAST_JS = """node => {
  const rgb = (text) => text.match(/[\\d.]+/g).map(Number);
  const card = node.closest('.member');
  const [r, g, b] = rgb(getComputedStyle(node).color);
  const alpha = Number(getComputedStyle(node).opacity);
  const back = rgb(getComputedStyle(card).backgroundColor);
  const mixed = [r, g, b].map((c, i) => c * alpha + back[i] * (1 - alpha));
  const lum = (c) => {
    const [x, y, z] = c.map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * x + 0.7152 * y + 0.0722 * z;
  };
  const [hi, lo] = [lum(mixed), lum(back)].sort((a, b) => b - a);
  return (hi + 0.05) / (lo + 0.05);
}"""


@pytest.mark.browser
async def test_no_guilds_shows_what_to_configure(page, monkeypatch):
    """Only a provider without its settings: the page says which variable to set."""
    monkeypatch.delenv("DBACK_POSTGRES_DSN", raising=False)
    async with running_server(environ={"DBACK_PLUGINS": "dback-postgres"}) as server:
        await page.goto(_url(server))
        empty = page.locator("#empty")
        await expect(empty).to_be_visible(timeout=WAIT_MS)
        await expect(empty).to_contain_text("No guilds to show")
        await expect(page.locator('#empty-hints li[data-name="dback-postgres"]')).to_contain_text(
            "not configured): set DBACK_POSTGRES_DSN"
        )
        other = page.locator('#other-plugins .plugin[data-name="dback-postgres"]')
        await expect(other.locator(".status")).to_have_text("not configured")
        await expect(other.locator(".reason")).to_contain_text("DBACK_POSTGRES_DSN")


@pytest.mark.browser
async def test_failed_and_unavailable_plugins_show_their_reasons(page):
    """A plugin that failed to load and an active one whose backing service went away are
    listed with why; the unavailable one's line updates without reloading the page."""

    class Provider:
        @hookimpl
        def get_server_data(self):
            return {"555": {"id": "five", "name": "Five", "default": True}}

        @hookimpl
        def get_user_data(self, server_id):
            return {"1": {"uid": "1", "username": "ada", "status": "online"}}

    provider = Provider()
    async with running_server(
        in_process=[("db", provider)], environ={"DBACK_PLUGINS": "dback-nope"}
    ) as server:
        await page.goto(_url(server))
        await expect(page.locator("#guild-name")).to_have_text("Five", timeout=WAIT_MS)
        await expect(page.locator("#empty")).to_be_hidden()
        failed = page.locator('#other-plugins .plugin[data-name="dback-nope"]')
        await expect(failed.locator(".status")).to_have_text("failed", timeout=WAIT_MS)
        await expect(failed.locator(".reason")).to_contain_text("no installed plugin is named")
        server.report_health(provider, UNAVAILABLE, "cannot reach 127.0.0.1:5432")
        active = page.locator('#plugins .plugin[data-name="db"]')
        await expect(active.locator(".status")).to_have_text("unavailable", timeout=WAIT_MS)
        await expect(active.locator(".reason")).to_have_text("cannot reach 127.0.0.1:5432")


@pytest.mark.browser
async def test_a_plugins_detail_is_shown_and_follows_it(page):
    """A plugin's ``dback_detail`` - a bus plugin's current role - is listed under it and
    updates while the page is open, like ``dback plugins`` shows it."""

    class Bus:
        role = "edge"

        @property
        def dback_detail(self):
            return f"role=auto ({self.role}) url=redis://127.0.0.1:6379/0 prefix=dback"

        @hookimpl
        def get_server_data(self):
            return {"555": {"id": "five", "name": "Five", "default": True}}

    bus = Bus()
    async with running_server(in_process=[("bus", bus)], environ={"DBACK_PLUGINS": ""}) as server:
        await page.goto(_url(server))
        line = page.locator('#plugins .plugin[data-name="bus"] .detail')
        await expect(line).to_have_text(re.compile(r"role=auto \(edge\)"), timeout=WAIT_MS)
        bus.role = "publisher"
        await expect(line).to_have_text(re.compile(r"role=auto \(publisher\)"), timeout=WAIT_MS)


@pytest.mark.browser
async def test_charts_show_viewers_and_events_per_second(quiet_mock_server, page):
    server = quiet_mock_server
    guild = await server.directory.guild(DEFAULT_GUILD)
    uid = next(iter(json.loads(guild.users_json())))
    async with Client(server), Client(server):
        await page.goto(_url(server))
        viewers = page.locator("#chart-viewers")
        # Two test clients and the page itself.
        await expect(viewers.locator(".value")).to_have_text("3", timeout=WAIT_MS)
        events = page.locator("#chart-events")
        await expect(events).to_have_attribute("data-samples", re.compile("[1-9]"), timeout=WAIT_MS)
        for index in range(40):
            await server.publish(Message(server_id=DEFAULT_GUILD, uid=uid, message=f"hi {index}"))
            await asyncio.sleep(0.05)
        await expect(events).not_to_have_attribute("data-peak", "0", timeout=WAIT_MS)
        peak = float(await events.get_attribute("data-peak"))
        print(f"events per second peak on the chart: {peak:.1f}")
        assert peak > 0
        pixels = await events.locator("canvas").evaluate(
            "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
            ".filter((v, i) => i % 4 === 3 && v > 0).length"
        )
        assert pixels > 0
