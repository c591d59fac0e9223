"""Options for bus plugins: ``keep_loaded`` guilds, a changed TTL reload reported as a
``Refresh``, and the configuration ``detail`` a plugin shows in ``dback plugins``."""

from __future__ import annotations

import asyncio

import pytest

from dback_core import hookimpl
from dback_core.loading.plugins import load_plugins
from dback_core.plugin.events import Refresh
from dback_core.testing import running_server


def user(uid, name, status="online"):
    return {"uid": uid, "username": name, "status": status, "roleColor": "#000000"}


class Provider:
    """Two guilds; asks the server to keep every guild loaded when ``keep`` is set."""

    def __init__(self, keep: bool):
        self.keep = keep
        self.servers = {"1": {"id": "one", "name": "One"}, "2": {"id": "two", "name": "Two"}}
        self.users = {"1": {"5": user("5", "five")}, "2": {"6": user("6", "six")}}

    @hookimpl
    def startup(self, host):
        host.keep_loaded(self.keep)

    @hookimpl
    def get_server_data(self):
        return self.servers

    @hookimpl
    def get_user_data(self, server_id):
        return self.users.get(server_id)


async def test_keep_loaded_loads_every_guild_at_start_and_when_the_list_grows():
    provider = Provider(keep=True)
    async with running_server([("p", provider)], environ={"DBACK_PLUGINS": ""}) as server:
        assert set(server.directory.guilds) == {"1", "2"}
        provider.servers["3"] = {"id": "three", "name": "Three"}
        provider.users["3"] = {"7": user("7", "seven")}
        await server.refresh(None)
        assert set(server.directory.guilds) == {"1", "2", "3"}
        assert server.directory.guilds["3"].users["7"]["username"] == "seven"


async def test_without_keep_loaded_guilds_load_on_demand():
    async with running_server([("p", Provider(keep=False))], environ={"DBACK_PLUGINS": ""}) as s:
        assert s.directory.guilds == {}


class Recorder:
    """Queues every ``event_applied`` call, for a test to wait on."""

    def __init__(self):
        self.seen: asyncio.Queue = asyncio.Queue()

    @hookimpl
    def event_applied(self, event, origin):
        self.seen.put_nowait((event, origin))


@pytest.mark.slow
async def test_a_ttl_reload_that_changed_a_guild_is_reported_as_a_refresh():
    provider, recorder = Provider(keep=True), Recorder()
    plugins = [("p", provider), ("r", recorder)]
    async with running_server(plugins, environ={"DBACK_PLUGINS": ""}, refresh_seconds=1.0):
        provider.users["2"]["6"] = user("6", "six", status="idle")
        event, origin = await asyncio.wait_for(recorder.seen.get(), 30)
    assert (event, origin) == (Refresh("2"), None)


class Described:
    dback_detail = "role=edge url=redis://127.0.0.1:6379/0"

    @hookimpl
    def get_client_id(self, server_id):
        return None


def test_a_plugin_detail_is_part_of_its_description():
    plugins = load_plugins(environ={"DBACK_PLUGINS": ""}, in_process=[("described", Described())])
    entry = next(e for e in plugins.describe()["plugins"] if e["name"] == "described")
    assert entry["detail"] == "role=edge url=redis://127.0.0.1:6379/0"


@pytest.mark.slow
async def test_a_ttl_reload_that_changed_the_guild_list_is_reported_as_a_refresh():
    provider, recorder = Provider(keep=False), Recorder()
    plugins = [("p", provider), ("r", recorder)]
    async with running_server(plugins, environ={"DBACK_PLUGINS": ""}, refresh_seconds=1.0):
        provider.servers["3"] = {"id": "three", "name": "Three"}
        event, origin = await asyncio.wait_for(recorder.seen.get(), 30)
    assert (event, origin) == (Refresh(None), None)
