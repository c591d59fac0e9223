"""Plugin discovery, order, selection, fail-soft loading and the merge rules."""

from __future__ import annotations

import json
import logging

import pytest

from dback_core import hookimpl
from dback_core.loading.plugins import ACTIVE, DISABLED, FAILED, load_plugins
from dback_core.plugin.errors import PluginError
from dback_core.testing import Client, running_server
from tests.support.installed_plugins import install_plugin

MOCK_DEFAULT = "232769614004748288"


GOOD = """
from dback_core import hookimpl

@hookimpl
def get_server_data():
    return {"555": {"id": "five", "name": "Five", "passworded": False}}

@hookimpl
def get_user_data(server_id):
    if server_id == "555":
        return {"1": {"uid": "1", "username": "ada", "status": "online", "roleColor": "#112233"}}
    return None
"""


def test_the_installed_mock_is_discovered_through_its_entry_point():
    plugins = load_plugins(environ={})
    mock = next(record for record in plugins.records if record.name == "dback-mock")
    assert mock.status == ACTIVE
    assert mock.version and mock.source == "entry point"
    assert mock.fallback_only is True
    assert set(mock.hooks) == {"get_server_data", "get_user_data", "event_sources"}


def test_dback_plugins_selects_and_orders(site):
    install_plugin(site, "tp-alpha", GOOD)
    install_plugin(site, "tp-beta", GOOD)
    plugins = load_plugins(environ={"DBACK_PLUGINS": "tp-beta, tp_alpha"})
    assert [record.name for record in plugins.active] == ["tp-beta", "tp-alpha"]
    assert all(record.version == "1.2.3" for record in plugins.active)


def test_unset_loads_all_with_the_embedded_default_last(site):
    install_plugin(site, "tp-zeta", GOOD)
    names = [record.name for record in load_plugins(environ={}).active]
    assert names.index("tp-zeta") < names.index("dback-mock")
    assert names[-1] == "dback-mock"


def test_empty_list_loads_nothing():
    assert load_plugins(environ={"DBACK_PLUGINS": ""}).active == []


def test_disabled_plugins_are_listed_but_not_loaded(site):
    install_plugin(site, "tp-alpha", GOOD)
    plugins = load_plugins(environ={"DBACK_DISABLE_PLUGINS": "tp-alpha"})
    record = next(r for r in plugins.records if r.name == "tp-alpha")
    assert record.status == DISABLED and record.plugin is None
    assert "tp-alpha" not in plugins.describe()["order"]


def test_a_plugin_that_fails_to_import_does_not_stop_the_others(site, caplog):
    install_plugin(site, "tp-broken", "raise ImportError('needs libfoo')\n")
    install_plugin(site, "tp-alpha", GOOD)
    with caplog.at_level(logging.ERROR):
        plugins = load_plugins(environ={"DBACK_PLUGINS": "tp-broken,tp-alpha"})
    broken = plugins.records[0]
    assert broken.status == FAILED and "needs libfoo" in broken.error
    assert [record.name for record in plugins.active] == ["tp-alpha"]
    assert "tp-broken" in caplog.text


def test_a_secret_in_a_load_error_is_not_listed(site):
    install_plugin(site, "tp-leaky", "raise ConnectionError('no postgresql://ops:hunter2@db/x')")
    plugins = load_plugins(environ={"DBACK_PLUGINS": "tp-leaky"})
    listed = json.dumps(plugins.describe())
    assert "ConnectionError" in listed and "hunter2" not in listed


def test_strict_mode_stops_on_a_broken_plugin(site):
    install_plugin(site, "tp-broken", "raise ImportError('needs libfoo')\n")
    with pytest.raises(PluginError, match="tp-broken"):
        load_plugins(environ={"DBACK_PLUGINS": "tp-broken", "DBACK_STRICT_PLUGINS": "1"})


def test_a_misspelled_hook_is_reported_with_a_suggestion(site):
    install_plugin(
        site,
        "tp-typo",
        """
        from dback_core import hookimpl

        @hookimpl
        def get_user_dta(server_id):
            return {}
        """,
    )
    record = load_plugins(environ={"DBACK_PLUGINS": "tp-typo"}).records[0]
    assert record.status == FAILED
    assert "get_user_dta" in record.error and "get_user_data" in record.error


def test_an_unknown_name_in_the_list_is_reported():
    record = load_plugins(environ={"DBACK_PLUGINS": "dback-nothing"}).records[0]
    assert record.status == FAILED and "dback-nothing" in record.error


def test_a_plugin_class_gets_one_instance_per_load(site):
    install_plugin(
        site,
        "tp-cls",
        """
        from dback_core import hookimpl

        class Provider:
            @hookimpl
            def get_server_data(self):
                return {"7": {"id": "seven", "name": str(id(self))}}
        """,
        target="tp_cls:Provider",
    )
    first = load_plugins(environ={"DBACK_PLUGINS": "tp-cls"}).records[0].plugin
    second = load_plugins(environ={"DBACK_PLUGINS": "tp-cls"}).records[0].plugin
    assert type(first).__name__ == "Provider" and first is not second


async def test_the_mock_steps_aside_for_an_installed_real_provider(site):
    install_plugin(site, "tp-alpha", GOOD)
    async with running_server(environ={}) as server, Client(server) as client:
        join = await client.join("default")
    assert set(client.server_list) == {"555"}
    assert join["data"]["users"]["1"]["username"] == "ada"


async def test_the_mock_serves_beside_a_provider_when_asked(site):
    install_plugin(site, "tp-alpha", GOOD)
    environ = {"DBACK_PLUGINS": "tp-alpha,dback-mock"}
    async with running_server(environ=environ) as server, Client(server) as client:
        assert set(client.server_list) >= {"555", MOCK_DEFAULT}
        defaults = [key for key, entry in client.server_list.items() if entry.get("default")]
    assert defaults == [MOCK_DEFAULT]


class Servers:
    def __init__(self, servers):
        self.servers = servers

    @hookimpl
    def get_server_data(self):
        return self.servers


class Users:
    def __init__(self, users):
        self.users = users

    @hookimpl
    def get_user_data(self, server_id):
        return self.users.get(server_id)


def user(uid, name, status="online"):
    return {"uid": uid, "username": name, "status": status, "roleColor": "#000000"}


async def test_server_lists_merge_and_the_earlier_plugin_wins_a_key():
    first = Servers({"1": {"id": "one", "name": "First"}, "2": {"id": "two", "name": "Two"}})
    second = Servers({"1": {"id": "uno", "name": "Second"}, "3": {"id": "three", "name": "3"}})
    in_process = [("first", first), ("second", second)]
    async with running_server(in_process, environ={"DBACK_PLUGINS": ""}) as server:
        async with Client(server) as client:
            servers = client.server_list
    assert set(servers) == {"1", "2", "3"}
    assert servers["1"]["name"] == "First" and servers["1"]["id"] == "one"
    assert servers["1"]["default"] is True


async def test_members_come_from_the_first_plugin_with_an_answer():
    """The seed's hybrid case: Discord first, the database when Discord has nothing."""
    servers = Servers({"1": {"id": "one", "name": "One"}, "2": {"id": "two", "name": "Two"}})
    discord = Users({"1": {"10": user("10", "from-discord")}, "2": {}})
    database = Users({"1": {"20": user("20", "from-db")}, "2": {"21": user("21", "db-only")}})
    in_process = [("servers", servers), ("discord", discord), ("database", database)]
    async with running_server(in_process, environ={"DBACK_PLUGINS": ""}) as server:
        async with Client(server) as client:
            one = await client.join("one")
            two = await client.join("two")
    assert set(one["data"]["users"]) == {"10"}
    assert set(two["data"]["users"]) == {"21"}
    assert server.directory.guilds["2"].owner == "database"


async def test_a_raising_or_garbage_provider_counts_as_no_answer(caplog):
    class Raising:
        @hookimpl
        def get_user_data(self, server_id):
            raise RuntimeError("database on fire")

    class Garbage:
        @hookimpl
        async def get_user_data(self, server_id):
            return ["not", "a", "dict"]

    servers = Servers({"1": {"id": "one", "name": "One"}})
    backup = Users({"1": {"5": user("5", "survivor")}})
    in_process = [
        ("servers", servers),
        ("raising", Raising()),
        ("garbage", Garbage()),
        ("backup", backup),
    ]
    with caplog.at_level(logging.WARNING):
        async with running_server(in_process, environ={"DBACK_PLUGINS": ""}) as server:
            async with Client(server) as client:
                join = await client.join("one")
    assert set(join["data"]["users"]) == {"5"}
    assert "raising" in caplog.text and "database on fire" in caplog.text
    assert "garbage" in caplog.text


async def test_user_records_are_repaired_or_dropped_with_the_plugins_name(caplog):
    servers = Servers({"1": {"id": "one", "name": "One"}})
    messy = Users(
        {
            "1": {
                "a": {"uid": "a", "username": "fine", "status": "online", "roleColor": "#ABCDEF"},
                "b": {"username": "no-uid-field"},
                "c": {"uid": "c", "username": "weird", "status": "sleeping", "roleColor": 123},
                "d": {"uid": "d"},
                "e": "not a record",
                "f": {"uid": ["x"], "username": "bad-uid"},
            }
        }
    )
    with caplog.at_level(logging.WARNING):
        async with (
            running_server(
                [("servers", servers), ("messy", messy)], environ={"DBACK_PLUGINS": ""}
            ) as server,
            Client(server) as client,
        ):
            users = (await client.join("one"))["data"]["users"]
    assert users["a"] == {
        "uid": "a",
        "username": "fine",
        "status": "online",
        "roleColor": "#abcdef",
    }
    assert users["b"]["uid"] == "b" and users["b"]["status"] == "offline"
    assert users["c"]["status"] == "offline" and users["c"]["roleColor"] == "#00007b"
    assert users["d"]["username"] == "d" and users["d"]["roleColor"] is False
    assert "e" not in users
    assert users["f"]["uid"] == "f"
    assert "messy" in caplog.text and "'e'" in caplog.text


async def test_disabled_guilds_are_hidden_and_passworded_is_boolean():
    servers = Servers(
        {
            "1": {"id": "one", "name": "One", "passworded": 0, "enabled": True},
            "2": {"id": "two", "name": "Two", "enabled": False},
            "3": {"id": "three", "name": "Three", "passworded": "yes", "is_default": True},
        }
    )
    async with running_server([("servers", servers)], environ={"DBACK_PLUGINS": ""}) as server:
        async with Client(server) as client:
            listed = client.server_list
    assert set(listed) == {"1", "3"}
    assert listed["1"]["passworded"] is False and listed["3"]["passworded"] is True
    assert listed["3"]["default"] is True and "default" not in listed["1"]


async def test_a_plugin_source_only_changes_guilds_it_provided():
    class Source:
        def __init__(self):
            import asyncio

            self.queue = asyncio.Queue()

        @hookimpl
        def event_sources(self):
            return [self.stream]

        async def stream(self):
            while True:
                yield await self.queue.get()

    from dback_core.plugin.events import Presence

    servers = Servers({"1": {"id": "one", "name": "One"}})
    provider = Users({"1": {"5": user("5", "five")}})
    outsider = Source()
    in_process = [("servers", servers), ("provider", provider), ("outsider", outsider)]
    async with running_server(in_process, environ={"DBACK_PLUGINS": ""}) as server:
        async with Client(server) as client:
            await client.join("one")
            await outsider.queue.put(Presence("1", "5", "idle"))
            await server.publish(Presence("1", "5", "dnd"))
            frame = await client.recv_type("presence")
    assert frame["data"]["status"] == "dnd"
    assert server.directory.guilds["1"].users["5"]["status"] == "dnd"


def test_a_provider_without_its_settings_is_not_configured_and_the_mock_serves(site):
    install_plugin(
        site,
        "tp-needs-dsn",
        """
        from dback_core import NotConfigured, hookimpl

        class Provider:
            def __init__(self):
                raise NotConfigured("set TP_DSN to use this plugin")

            @hookimpl
            def get_server_data(self):
                return {}
        """,
        target="tp_needs_dsn:Provider",
    )
    plugins = load_plugins(environ={"DBACK_STRICT_PLUGINS": "1"})
    record = next(r for r in plugins.records if r.name == "tp-needs-dsn")
    assert record.status == "not configured" and "TP_DSN" in record.error
    assert "dback-mock" in plugins.describe()["order"]
