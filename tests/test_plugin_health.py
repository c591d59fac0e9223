"""Plugins report their own health at run time: ``/readyz``, ``/api/plugins``, ``/metrics`` and
the guild list follow what they say."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from dback_core import hookimpl
from dback_core.plugin.health import FAILED, SERVING, UNAVAILABLE
from dback_core.testing import Client, running_server
from tests.support.http_get import fetch_content


def member(uid: str, name: str) -> dict:
    return {"uid": uid, "username": name, "status": "online", "roleColor": "#112233"}


class Provider:
    """One guild; keeps the server it was started with so a test can report for it."""

    def __init__(self, key: str = "10", short: str = "ten", answer: bool = True):
        self.key, self.short = key, short
        self.answer = answer

    @hookimpl
    def get_server_data(self):
        if not self.answer:
            raise ConnectionError("database is not reachable")
        return {self.key: {"id": self.short, "name": self.short.title(), "default": True}}

    @hookimpl
    def get_user_data(self, server_id):
        return {"1": member("1", "one")} if server_id == self.key else None


async def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_ready_while_every_provider_listed_and_serving():
    provider = Provider()
    async with running_server(in_process=[("db", provider)], environ={"DBACK_PLUGINS": ""}) as srv:
        assert await fetch_content(srv, "/readyz") == (200, {"ready": True})
        srv.report_health(provider, UNAVAILABLE, "cannot reach 127.0.0.1:5432")
        status, body = await fetch_content(srv, "/readyz")
        assert status == 503
        assert body["waiting"] == {"db": "unavailable: cannot reach 127.0.0.1:5432"}
        srv.report_health("db", SERVING)
        assert (await fetch_content(srv, "/readyz"))[0] == 200


async def test_not_ready_until_a_provider_answered_its_first_list():
    provider = Provider(answer=False)
    async with running_server(in_process=[("db", provider)], environ={"DBACK_PLUGINS": ""}) as srv:
        status, body = await fetch_content(srv, "/readyz")
        assert status == 503 and body["waiting"] == {"db": "has not listed its guilds yet"}
        provider.answer = True
        await srv.refresh(None)
        assert (await fetch_content(srv, "/readyz"))[0] == 200


async def test_unavailable_keeps_serving_the_last_data_and_shows_the_reason():
    provider = Provider()
    async with running_server(in_process=[("db", provider)], environ={"DBACK_PLUGINS": ""}) as srv:
        srv.report_health(provider, UNAVAILABLE, "connection refused")
        async with Client(srv) as client:
            assert list(client.server_list) == ["10"]
            join = await client.join("ten")
            assert join["type"] == "server-join" and "1" in join["data"]["users"]
        _, plugins = await fetch_content(srv, "/api/plugins")
        entry = next(entry for entry in plugins["plugins"] if entry["name"] == "db")
        assert (entry["status"], entry["error"]) == ("unavailable", "connection refused")


async def test_a_failed_plugin_is_withdrawn_and_returns_when_serving_again():
    failing, steady = Provider("10", "ten"), Provider("20", "twenty")
    plugins = [("bot", failing), ("db", steady)]
    async with running_server(in_process=plugins, environ={"DBACK_PLUGINS": ""}) as srv:
        async with Client(srv) as client:
            assert set(client.server_list) == {"10", "20"}
            srv.report_health(failing, FAILED, "Discord reset the bot token (4004)")
            listed = await client.recv_type("server-list")
            assert set(listed["data"]) == {"20"}
            assert (await client.join("ten"))["type"] == "error"

            status, body = await fetch_content(srv, "/readyz")
            assert status == 503 and body["waiting"]["bot"].startswith("failed: Discord reset")
            _, described = await fetch_content(srv, "/api/plugins")
            entry = next(entry for entry in described["plugins"] if entry["name"] == "bot")
            assert entry["status"] == "failed" and "4004" in entry["error"]
            _, metrics = await fetch_content(srv, "/metrics")
            assert 'dback_plugin_status{plugin="bot",status="failed",version=""} 1.0' in metrics
            assert "dback_ready 0.0" in metrics

            srv.report_health(failing, SERVING)
            listed = await client.recv_type("server-list")
            assert set(listed["data"]) == {"10", "20"}
            assert (await client.join("ten"))["type"] == "server-join"
            assert (await fetch_content(srv, "/readyz"))[0] == 200


async def test_a_failed_provider_does_not_bring_the_embedded_mock_back():
    provider = Provider()
    # Every installed plugin loads; the embedded mock stands aside for the real provider.
    async with running_server(in_process=[("db", provider)], environ={}) as srv:
        assert set(srv.directory.servers) == {"10"}
        srv.report_health(provider, FAILED, "gone")
        await wait_until(lambda: not srv.directory.servers)
        host, port = srv.address
        async with websockets.connect(f"ws://{host}:{port}") as connection:
            first = json.loads(await connection.recv())
        assert first == {"type": "server-list", "data": {}}


async def test_reports_are_checked():
    provider = Provider()
    async with running_server(in_process=[("db", provider)], environ={"DBACK_PLUGINS": ""}) as srv:
        with pytest.raises(ValueError, match="health status must be one of"):
            srv.report_health(provider, "sleepy")
        with pytest.raises(LookupError):
            srv.report_health("nobody", FAILED, "x")


async def test_viewers_of_a_failed_plugins_guild_are_told_and_taken_out():
    failing, steady = Provider("10", "ten"), Provider("20", "twenty")
    plugins = [("bot", failing), ("db", steady)]
    async with running_server(in_process=plugins, environ={"DBACK_PLUGINS": ""}) as srv:
        async with Client(srv) as viewer:
            assert (await viewer.join("ten"))["type"] == "server-join"
            srv.report_health(failing, FAILED, "Discord reset the bot token (4004)")
            told = await viewer.recv_type("error")
            assert "couldn't connect" in told["data"]["message"].lower()
            await wait_until(lambda: not srv.fanout.by_guild.get("10"))
            assert (await viewer.join("twenty"))["type"] == "server-join"
