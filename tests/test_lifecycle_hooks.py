"""The lifecycle around the data hooks: startup's arguments, NotConfigured at startup,
set-up commands of unconfigured plugins, ``event_applied``, and providers that fail on reload."""

from __future__ import annotations

import asyncio
import logging
import sys
import textwrap

import click
import pytest

from dback_core import PluginHost, hookimpl
from dback_core.loading.hooks import PluginHooks
from dback_core.loading.plugins import NOT_CONFIGURED, load_plugins
from dback_core.plugin.errors import NotConfigured
from dback_core.plugin.events import Message, Presence, Refresh
from dback_core.testing import Client, running_server


def user(uid, name, status="online"):
    return {"uid": uid, "username": name, "status": status, "roleColor": "#000000"}


class Provider:
    """A provider whose answers a test can change or break between calls."""

    def __init__(self):
        self.servers = {"1": {"id": "one", "name": "One"}, "2": {"id": "two", "name": "Two"}}
        self.users = {"1": {"5": user("5", "five")}, "2": {"6": user("6", "six")}}
        self.broken = False
        self.started_with = None

    @hookimpl
    def startup(self, settings, host):
        self.started_with = (settings, host)

    @hookimpl
    def get_server_data(self):
        if self.broken:
            raise ConnectionError("database went away")
        return self.servers

    @hookimpl
    def get_user_data(self, server_id):
        if self.broken:
            raise ConnectionError("database went away")
        return self.users.get(server_id)


class Recorder:
    """Records every ``event_applied`` call."""

    def __init__(self):
        self.seen = []

    @hookimpl
    def event_applied(self, event, origin):
        self.seen.append((event, origin))


async def test_startup_receives_the_settings_and_its_host():
    provider = Provider()
    async with running_server([("provider", provider)], environ={"DBACK_PLUGINS": ""}) as server:
        settings, host = provider.started_with
        assert settings is server.settings
        assert isinstance(host, PluginHost) and host.plugin_name == "provider"


async def test_not_configured_at_startup_takes_the_plugin_out_and_the_mock_serves(caplog):
    class NeedsDsn:
        dback_fallback_only = False

        @hookimpl
        def startup(self):
            raise NotConfigured("set TP_DSN first")

        @hookimpl
        def get_server_data(self):
            return {"9": {"id": "nine", "name": "Nine"}}

    caplog.set_level(logging.INFO, logger="dback_core")
    async with running_server([("needs-dsn", NeedsDsn())], environ={}) as server:
        async with Client(server) as client:
            servers = client.server_list
        record = next(r for r in server.plugins.records if r.name == "needs-dsn")
    assert record.status == NOT_CONFIGURED and "TP_DSN" in record.error
    assert "9" not in servers and servers, "the embedded mock serves instead"
    assert "set TP_DSN first" in caplog.text


def install_module(tmp_path, monkeypatch, module: str, source: str, entry_points: str) -> None:
    """Install ``module`` the way pip does, with ``entry_points`` lines in the dback group;
    the caller pops it from ``sys.modules`` afterwards."""
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    dist_info = tmp_path / f"{module}-1.0.dist-info"
    dist_info.mkdir()
    name = module.replace("_", "-")
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[dback]\n{entry_points}\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_an_unconfigured_plugin_still_adds_its_set_up_commands(tmp_path, monkeypatch):
    source = """
        import click
        from dback_core import NotConfigured, hookimpl

        class Provider:
            def __init__(self):
                raise NotConfigured("set TP_DSN")

            @staticmethod
            @hookimpl
            def register_commands(cli):
                @cli.command("tp-migrate")
                def migrate():
                    click.echo("migrating")
        """
    install_module(
        tmp_path, monkeypatch, "tp_setup_cmd", source, "tp-setup-cmd = tp_setup_cmd:Provider"
    )
    try:
        plugins = load_plugins(environ={"DBACK_PLUGINS": "tp-setup-cmd"})
        group = click.Group()
        PluginHooks(plugins).register_commands(group)
    finally:
        sys.modules.pop("tp_setup_cmd", None)
    assert plugins.records[0].status == NOT_CONFIGURED
    assert "tp-migrate" in group.commands


def test_an_unconfigured_plugins_failing_set_up_commands_are_reported(
    tmp_path, monkeypatch, caplog
):
    """A static ``register_commands`` that raises (a TypeError too) is logged as an error;
    one that needs an instance is left out without one."""
    source = """
        from dback_core import NotConfigured, hookimpl

        class Broken:
            def __init__(self):
                raise NotConfigured("set TP_DSN")

            @staticmethod
            @hookimpl
            def register_commands(cli):
                raise TypeError("a bug in the command code")

        class NeedsInstance:
            def __init__(self):
                raise NotConfigured("set TP_DSN")

            @hookimpl
            def register_commands(self, cli):
                raise AssertionError("never called without an instance")
        """
    entry_points = "tp-broken = tp_broken_cmd:Broken\ntp-instance = tp_broken_cmd:NeedsInstance"
    install_module(tmp_path, monkeypatch, "tp_broken_cmd", source, entry_points)
    try:
        plugins = load_plugins(environ={"DBACK_PLUGINS": "tp-broken,tp-instance"})
        with caplog.at_level(logging.ERROR):
            PluginHooks(plugins).register_commands(click.Group())
    finally:
        sys.modules.pop("tp_broken_cmd", None)
    assert "plugin tp-broken: register_commands raised" in caplog.text
    assert "tp-instance" not in caplog.text


async def test_event_applied_sees_what_changed_but_not_relayed_or_dropped_events():
    provider, recorder = Provider(), Recorder()
    in_process = [("provider", provider), ("recorder", recorder)]
    async with running_server(in_process, environ={"DBACK_PLUGINS": ""}) as server:
        async with Client(server) as client:
            await client.join("one")
            changed = Presence("1", "5", "idle")
            await server.publish(changed, "provider")
            await server.publish(Presence("1", "5", "idle"), "provider")  # no change
            await server.publish(Presence("2", "6", "dnd"), "provider")  # guild not loaded
            relayed = Message("1", "5", "from elsewhere")
            await server.publish(relayed, None, relay=False)
            refresh = Refresh(None)
            await server.publish(refresh, None)
            await client.recv_type("message")
    assert recorder.seen == [(changed, "provider"), (refresh, None)]


async def test_a_failing_event_applied_hook_does_not_stop_delivery(caplog):
    class Broken:
        @hookimpl
        def event_applied(self, event):
            raise RuntimeError("bus unavailable")

    in_process = [("provider", Provider()), ("broken", Broken())]
    async with running_server(in_process, environ={"DBACK_PLUGINS": ""}) as server:
        async with Client(server) as client:
            await client.join("one")
            await server.publish(Presence("1", "5", "dnd"), "provider")
            frame = await client.recv_type("presence")
    assert frame["data"]["status"] == "dnd"
    assert "broken" in caplog.text and "bus unavailable" in caplog.text


async def test_a_failed_guild_list_reload_keeps_the_last_good_list():
    provider = Provider()
    async with running_server([("provider", provider)], environ={"DBACK_PLUGINS": ""}) as server:
        provider.broken = True
        await server.refresh(None)
        async with Client(server) as client:
            servers = client.server_list
    assert set(servers) == {"1", "2"}


async def test_a_failed_member_reload_keeps_the_members_in_memory():
    provider = Provider()
    async with running_server([("provider", provider)], environ={"DBACK_PLUGINS": ""}) as server:
        async with Client(server) as client:
            await client.join("one")
            provider.broken = True
            await server.refresh("1")
            again = await client.join("one")
    assert set(again["data"]["users"]) == {"5"}


async def test_a_guild_whose_first_load_failed_is_asked_again_on_the_next_join():
    provider = Provider()
    async with running_server([("provider", provider)], environ={"DBACK_PLUGINS": ""}) as server:
        provider.broken = True
        async with Client(server) as client:
            first = await client.join("two")
            provider.broken = False
            second = await client.join("two")
    assert first["data"]["users"] == {}
    assert set(second["data"]["users"]) == {"6"}


@pytest.mark.parametrize("hook", ["startup", "event_applied"])
def test_new_hooks_are_known_to_the_loader(hook):
    from dback_core.loading.plugins import hook_names

    assert hook in hook_names()


async def test_event_applied_is_awaited_when_async():
    done = asyncio.Event()

    class AsyncRecorder:
        @hookimpl
        async def event_applied(self, event, origin):
            await asyncio.sleep(0)
            done.set()

    in_process = [("provider", Provider()), ("recorder", AsyncRecorder())]
    async with running_server(in_process, environ={"DBACK_PLUGINS": ""}) as server:
        async with Client(server) as client:
            await client.join("one")
            await server.publish(Presence("1", "5", "idle"), "provider")
    assert done.is_set()
