"""The ``shutdown`` and ``register_commands`` hooks: called as documented, failures contained."""

from __future__ import annotations

import asyncio
import logging

import click
from click.testing import CliRunner

from dback_core import hookimpl
from dback_core.loading.hooks import PluginHooks
from dback_core.loading.plugins import load_plugins
from dback_core.testing import Client, running_server


class Recorder:
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.calls = calls

    @hookimpl
    def get_server_data(self):
        return {"1": {"id": "one", "name": "One"}}

    @hookimpl
    def startup(self):
        self.calls.append(f"start {self.name}")

    @hookimpl
    async def shutdown(self):
        await asyncio.sleep(0)
        self.calls.append(f"stop {self.name}")


class Exploding:
    @hookimpl
    def shutdown(self):
        raise RuntimeError("pool already closed")


async def test_shutdown_runs_once_in_reverse_order_after_clients_are_gone():
    calls: list[str] = []
    plugins = [("first", Recorder("first", calls)), ("second", Recorder("second", calls))]
    async with running_server(plugins, environ={"DBACK_PLUGINS": ""}) as server:
        async with Client(server) as client:
            await client.join("one")
        assert calls == ["start first", "start second"]
    assert calls == ["start first", "start second", "stop second", "stop first"]
    assert not server.connections


async def test_a_failing_shutdown_is_logged_and_the_others_still_run(caplog):
    calls: list[str] = []
    plugins = [("first", Recorder("first", calls)), ("exploding", Exploding())]
    with caplog.at_level(logging.ERROR):
        async with running_server(plugins, environ={"DBACK_PLUGINS": ""}):
            pass
    assert calls[-1] == "stop first"
    assert "plugin exploding: shutdown raised" in caplog.text


class Commands:
    @hookimpl
    def register_commands(self, cli):
        @cli.group("weather")
        def weather():
            """Weather plugin commands."""

        @weather.command("forecast")
        @click.argument("city")
        def forecast(city):
            click.echo(f"sunny in {city}")


class BrokenCommands:
    @hookimpl
    def register_commands(self, cli):
        raise RuntimeError("cannot build commands")


def test_plugin_commands_join_the_command_line(caplog):
    plugins = load_plugins(
        environ={"DBACK_PLUGINS": ""},
        in_process=[("broken", BrokenCommands()), ("weather", Commands())],
    )
    group = click.Group("dback")
    with caplog.at_level(logging.ERROR):
        PluginHooks(plugins).register_commands(group)
    result = CliRunner().invoke(group, ["weather", "forecast", "Lisbon"])
    assert result.exit_code == 0, result.output
    assert result.output == "sunny in Lisbon\n"
    assert "plugin broken: register_commands raised" in caplog.text
