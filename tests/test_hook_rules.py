"""Each hook's rule is stated once, on its spec (``@rule`` in hookspecs.py), and the hook
caller and ``dback plugins`` follow what it says."""

from __future__ import annotations

import dataclasses
import logging

from dback_core import hookimpl
from dback_core.loading.plugins import DATA_HOOKS, hook_names, load_plugins
from dback_core.plugin import hookspecs
from dback_core.plugin.hookspecs import FIRST, MERGE, RULES
from dback_core.testing import Client, running_server


def test_every_hook_has_a_rule():
    assert sorted(RULES) == hook_names()


def test_describe_shows_the_merge_rules_from_the_specs():
    merge = load_plugins(environ={"DBACK_PLUGINS": ""}).describe()["merge"]
    assert merge == {
        name: rule.text for name, rule in RULES.items() if rule.combine in (MERGE, FIRST)
    }
    assert set(merge) == {
        "get_server_data",
        "get_user_data",
        "authorize",
        "get_client_id",
        "worker_sharing",
    }
    assert {name for name, rule in RULES.items() if rule.fallback_steps_aside} == DATA_HOOKS


class Guild:
    """Guild 10 with one member and a client id given as ``client_id``."""

    def __init__(self, name: str, client_id, calls: list[str]):
        self.name, self.client_id, self.calls = name, client_id, calls

    @hookimpl
    def get_server_data(self):
        return {"10": {"id": "ten", "name": "Ten"}}

    @hookimpl
    def get_user_data(self):
        return {"1": {"uid": "1", "username": "one", "status": "online"}}

    @hookimpl
    def get_client_id(self):
        return self.client_id

    @hookimpl
    def shutdown(self):
        self.calls.append(self.name)


async def test_a_first_answer_of_the_wrong_type_is_warned_about_and_the_next_plugin_asked(caplog):
    calls: list[str] = []
    plugins = [("first", Guild("first", ["9"], calls)), ("second", Guild("second", 77, calls))]
    with caplog.at_level(logging.WARNING, logger="dback_core.loading.hooks"):
        async with running_server(plugins, environ={"DBACK_PLUGINS": ""}) as server:
            async with Client(server) as client:
                join = await client.join("ten")
    assert join["data"]["clientId"] == "77"
    assert "plugin first: get_client_id returned list, not a str; ignored" in caplog.text


async def test_the_caller_calls_in_the_order_the_rule_states(monkeypatch):
    async def stop_order() -> list[str]:
        calls: list[str] = []
        plugins = [("a", Guild("a", None, calls)), ("b", Guild("b", None, calls))]
        async with running_server(plugins, environ={"DBACK_PLUGINS": ""}):
            pass
        return calls

    assert RULES["shutdown"].reverse
    assert await stop_order() == ["b", "a"]
    forward = dataclasses.replace(RULES["shutdown"], reverse=False)
    monkeypatch.setitem(hookspecs.RULES, "shutdown", forward)
    assert await stop_order() == ["a", "b"]
