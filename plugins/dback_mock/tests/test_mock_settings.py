"""The mock's settings: a bad value stops the plugin with a message naming the variable.

Run through dback-core's pytest plugin (``dback``, ``dback_environ``): servers with only the
mock, whatever the shell sets.
"""

from __future__ import annotations

import pytest

from dback_core.plugin.errors import PluginError
from dback_mock.plugin import MockPlugin


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DBACK_MOCK_INTERVAL", "often", "DBACK_MOCK_INTERVAL must be a number, got 'often'"),
        ("DBACK_MOCK_INTERVAL", "0", "DBACK_MOCK_INTERVAL must be positive"),
        ("DBACK_MOCK_INTERVAL", "nan", "DBACK_MOCK_INTERVAL must be a finite number"),
        ("DBACK_MOCK_INTERVAL", "inf", "DBACK_MOCK_INTERVAL must be a finite number"),
        ("DBACK_MOCK_SEED", "seven", "DBACK_MOCK_SEED must be an integer, got 'seven'"),
    ],
)
async def test_a_bad_setting_is_named(dback, variable, value, message):
    with pytest.raises(PluginError, match=f"plugin dback-mock: {message}"):
        await dback.start("dback-mock", environ={variable: value})


def test_good_settings_are_read(dback_environ, monkeypatch):
    monkeypatch.setenv("DBACK_MOCK_INTERVAL", "0.5")
    monkeypatch.setenv("DBACK_MOCK_SEED", "11")
    monkeypatch.setenv("DBACK_MOCK_PASSWORD", "sesame")
    plugin = MockPlugin()
    assert plugin.interval == 0.5
    assert plugin.world.users("232769614004748288") == MockPlugin().world.users(
        "232769614004748288"
    )


def test_unset_settings_take_their_defaults(dback_environ):
    plugin = MockPlugin()
    assert plugin.interval == 3.0
