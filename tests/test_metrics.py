"""``/metrics`` over real HTTP: connections, events, frames, slow clients, plugin calls."""

from __future__ import annotations

import asyncio
import json

from prometheus_client.parser import text_string_to_metric_families

from dback_core import hookimpl
from dback_core.plugin.events import Message, Presence
from dback_core.testing import Client, running_server
from tests.support.drain import DrainClient
from tests.support.http_get import fetch

QUIET = {"DBACK_PLUGINS": ""}


class Provider:
    @hookimpl
    def get_server_data(self):
        return {"1": {"id": "one", "name": "One", "is_default": True}, "2": {"id": "two"}}

    @hookimpl
    def get_user_data(self, server_id):
        return {
            f"{server_id}{n}": {
                "uid": f"{server_id}{n}",
                "username": f"user{n}",
                "status": "online",
                "roleColor": False,
            }
            for n in range(3)
        }


class Broken:
    @hookimpl
    def get_user_data(self, server_id):
        raise RuntimeError("the backend is down")


async def scrape(server) -> dict[tuple[str, tuple], float]:
    status, headers, body = await fetch(server, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_connections_events_frames_and_provider_calls():
    plugins = [("broken", Broken()), ("provider", Provider())]
    async with running_server(plugins, environ=QUIET) as server:
        async with Client(server) as first, Client(server) as second, Client(server) as third:
            await first.join("one")
            await second.join("one")
            await third.join("two")
            await server.publish(Presence("1", "10", "idle"))
            await server.publish(Message("1", "10", "hi", "general"))
            await first.recv_type("message")
            samples = await scrape(server)
    assert samples[("dback_connections_per_guild", (("guild", "1"),))] == 2
    assert samples[("dback_connections_per_guild", (("guild", "2"),))] == 1
    assert samples[("dback_connections", ())] == 3
    assert samples[("dback_guilds", ())] == 2
    assert samples[("dback_ready", ())] == 1
    assert samples[("dback_events_total", (("kind", "Presence"),))] == 1
    assert samples[("dback_events_total", (("kind", "Message"),))] == 1
    assert samples[("dback_frames_out_total", ())] == 4
    provider = (("hook", "get_user_data"), ("plugin", "provider"))
    broken = (("hook", "get_user_data"), ("plugin", "broken"))
    assert samples[("dback_provider_calls_total", provider)] == 2
    assert samples[("dback_provider_calls_total", broken)] == 2
    assert samples[("dback_provider_call_seconds_count", provider)] == 2
    assert samples[("dback_provider_errors_total", (*broken, ("reason", "exception")))] == 2
    assert ("dback_provider_errors_total", (*provider, ("reason", "exception"))) not in samples
    status = {key[1]: value for key, value in samples.items() if key[0] == "dback_plugin_status"}
    assert status == {
        (("plugin", "broken"), ("status", "active"), ("version", "")): 1,
        (("plugin", "provider"), ("status", "active"), ("version", "")): 1,
    }


async def test_each_server_counts_for_itself():
    async with (
        running_server([("provider", Provider())], environ=QUIET) as busy,
        running_server([("provider", Provider())], environ=QUIET) as idle,
    ):
        await busy.publish(Presence("1", "10", "idle"))
        busy_samples, idle_samples = await scrape(busy), await scrape(idle)
    assert busy_samples[("dback_events_total", (("kind", "Presence"),))] == 1
    assert ("dback_events_total", (("kind", "Presence"),)) not in idle_samples


async def test_timeouts_are_counted_as_such():
    class Slow:
        @hookimpl
        async def get_user_data(self, server_id):
            await asyncio.sleep(3600)

    plugins = [("slow", Slow()), ("provider", Provider())]
    async with running_server(plugins, environ=QUIET, provider_timeout=0.2) as server:
        async with Client(server, timeout=10) as client:
            assert (await client.join("one"))["type"] == "server-join"
        samples = await scrape(server)
    key = (("hook", "get_user_data"), ("plugin", "slow"), ("reason", "timeout"))
    assert samples[("dback_provider_errors_total", key)] == 1


async def test_slow_clients_dropped_are_counted():
    async with running_server(
        [("provider", Provider())], environ=QUIET, max_client_buffer=64 * 1024
    ) as server:
        host, port = server.address
        silent = DrainClient(host, port, receive_buffer=4096)
        await silent.open()
        await silent.join("default")
        text = "x" * 2000
        for _ in range(5000):
            if server.fanout.slow_disconnects:
                break
            await server.publish(Message("1", "10", text, "c"))
            await asyncio.sleep(0)
        samples = await scrape(server)
        silent.close()
    assert samples[("dback_slow_clients_dropped_total", ())] == 1


async def test_the_plugins_endpoint_is_the_cli_description(monkeypatch):
    monkeypatch.setenv("DBACK_PLUGINS", "dback-mock")
    async with running_server() as server:
        status, headers, body = await fetch(server, "/api/plugins")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == server.plugins.describe()
