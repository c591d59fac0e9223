"""Warnings that point a plugin author at their mistake: a plugin that implements no hook (a
forgotten ``@hookimpl``), and records the core had to repair (bad status, bad colour) - each
logged once per plugin, not once per record or event."""

from __future__ import annotations

import logging
import uuid

from dback_core import Presence, hookimpl
from dback_core.loading.plugins import load_plugins
from dback_core.testing import Client, running_server
from tests.support.installed_plugins import install_plugin


def warnings(caplog, text: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and text in record.getMessage()
    ]


def test_a_forgotten_hookimpl_is_named_once(site, caplog):
    install_plugin(
        site,
        "tp-forgot",
        """
        class Provider:
            def get_server_data(self):
                return {"9": {"id": "nine", "name": "Nine"}}

            def get_user_data(self, server_id):
                return None
        """,
        target="tp_forgot:Provider",
    )
    with caplog.at_level(logging.WARNING):
        plugins = load_plugins(environ={"DBACK_PLUGINS": "tp-forgot"})
        plugins.report()
    assert plugins.records[0].is_active and plugins.records[0].hooks == []
    assert warnings(caplog, "tp-forgot") == [
        "plugin tp-forgot implements no hooks, though it has get_server_data, get_user_data: "
        "decorate them with @dback_core.hookimpl"
    ]


def test_a_plugin_with_nothing_that_looks_like_a_hook_is_warned_about_too(site, caplog):
    install_plugin(site, "tp-empty", "VALUE = 1\n")
    with caplog.at_level(logging.WARNING):
        load_plugins(environ={"DBACK_PLUGINS": "tp-empty"})
    assert warnings(caplog, "tp-empty") == [
        "plugin tp-empty implements no hooks (is @dback_core.hookimpl missing?), so it does nothing"
    ]


def test_a_plugin_with_hooks_is_not_warned_about(site, caplog):
    install_plugin(
        site,
        "tp-fine",
        "from dback_core import hookimpl\n@hookimpl\ndef get_server_data():\n    return {}\n",
    )
    with caplog.at_level(logging.WARNING):
        load_plugins(environ={"DBACK_PLUGINS": "tp-fine"})
    assert warnings(caplog, "tp-fine") == []


GUILD = "777"


class Sloppy:
    """Members whose statuses and colours the client cannot use."""

    @hookimpl
    def get_server_data(self):
        return {GUILD: {"id": "sloppy", "name": "Sloppy", "passworded": False}}

    @hookimpl
    def get_user_data(self, server_id):
        if server_id != GUILD:
            return None
        return {
            str(uid): {
                "uid": str(uid),
                "username": f"user{uid}",
                "status": "busy" if uid % 2 else "away",
                "roleColor": "red" if uid % 2 else "#12345",
            }
            for uid in range(10)
        }


async def test_repaired_statuses_and_colours_are_reported_once_per_plugin(caplog):
    name = f"sloppy-{uuid.uuid4().hex[:6]}"  # the once-per-plugin memory is process-wide
    environ = {"DBACK_PLUGINS": ""}
    with caplog.at_level(logging.WARNING):
        async with running_server(in_process=[(name, Sloppy())], environ=environ) as server:
            async with Client(server) as client:
                world = await client.join("sloppy")
                users = world["data"]["users"]
                assert {user["status"] for user in users.values()} == {"offline"}
                assert {user["roleColor"] for user in users.values()} == {False}
                await server.publish(Presence(GUILD, "1", "asleep", "renamed", "blue"), name)
                change = await client.recv_type("presence")
                assert change["data"]["status"] == "offline"
                assert change["data"]["roleColor"] is False
    statuses = warnings(caplog, f"plugin {name}: status")
    colours = warnings(caplog, f"plugin {name}: role colour")
    assert len(statuses) == 1 and "is not online, idle, dnd or offline" in statuses[0]
    assert len(colours) == 1 and "is not #rrggbb" in colours[0]


async def test_good_statuses_colours_and_no_colour_are_not_reported(caplog):
    name = f"tidy-{uuid.uuid4().hex[:6]}"

    class Tidy(Sloppy):
        @hookimpl
        def get_user_data(self, server_id):
            statuses = ["online", "IDLE", "dnd", "offline", "invisible"]
            colours = ["#aabbcc", "#abc", False, None, 0x112233]
            return {
                str(uid): {
                    "uid": str(uid),
                    "username": f"user{uid}",
                    "status": statuses[uid],
                    "roleColor": colours[uid],
                }
                for uid in range(5)
            }

    with caplog.at_level(logging.WARNING):
        async with running_server(in_process=[(name, Tidy())], environ={"DBACK_PLUGINS": ""}) as s:
            async with Client(s) as client:
                assert (await client.join("sloppy"))["type"] == "server-join"
    assert warnings(caplog, name) == []
