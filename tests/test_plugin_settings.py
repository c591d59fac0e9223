"""The settings API: plugins declare their variables; the core parses, checks and shows them
the same way for every plugin (``dback_core.plugin.settings``)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dback_core.loading.plugins import FAILED, NOT_CONFIGURED, installed_settings, load_plugins
from dback_core.plugin.errors import SettingsError
from dback_core.plugin.settings import Setting, declared, read
from tests.support.http_get import get
from tests.support.installed_plugins import install_plugin

BIN = Path(sys.executable).parent


def _even(value: int) -> None:
    if value % 2:
        raise ValueError(f"must be even, got {value}")


SETTINGS = (
    Setting("DBACK_T_TEXT", str, "plain", "some text"),
    Setting("DBACK_T_COUNT", int, 2, "a count", minimum=1, check=_even),
    Setting("DBACK_T_RATIO", float, 0.5, "a ratio", minimum=0),
    Setting("DBACK_T_FLAG", bool, False, "a switch"),
    Setting("DBACK_T_MODE", str, "fast", "a mode", choices=("fast", "Slow")),
    Setting("DBACK_T_KEY", str, None, "a key", secret=True),
)


def test_unset_and_blank_variables_take_their_defaults():
    assert read(SETTINGS, {"DBACK_T_TEXT": "  ", "DBACK_T_COUNT": ""}) == {
        "DBACK_T_TEXT": "plain",
        "DBACK_T_COUNT": 2,
        "DBACK_T_RATIO": 0.5,
        "DBACK_T_FLAG": False,
        "DBACK_T_MODE": "fast",
        "DBACK_T_KEY": None,
    }


def test_values_are_converted_to_their_declared_type():
    values = read(
        SETTINGS,
        {
            "DBACK_T_TEXT": " words ",
            "DBACK_T_COUNT": "4",
            "DBACK_T_RATIO": "1.5",
            "DBACK_T_FLAG": "Yes",
            "DBACK_T_MODE": "SLOW",
            "DBACK_T_KEY": "k",
        },
    )
    assert values == {
        "DBACK_T_TEXT": "words",
        "DBACK_T_COUNT": 4,
        "DBACK_T_RATIO": 1.5,
        "DBACK_T_FLAG": True,
        "DBACK_T_MODE": "Slow",
        "DBACK_T_KEY": "k",
    }


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("DBACK_T_COUNT", "two", "DBACK_T_COUNT must be an integer, got 'two'"),
        ("DBACK_T_COUNT", "1.5", "DBACK_T_COUNT must be an integer, got '1.5'"),
        ("DBACK_T_COUNT", "0", "DBACK_T_COUNT must be at least 1, got '0'"),
        ("DBACK_T_COUNT", "3", "DBACK_T_COUNT must be even, got 3"),
        ("DBACK_T_RATIO", "half", "DBACK_T_RATIO must be a number, got 'half'"),
        ("DBACK_T_RATIO", "nan", "DBACK_T_RATIO must be a finite number, got 'nan'"),
        ("DBACK_T_RATIO", "-inf", "DBACK_T_RATIO must be a finite number, got '-inf'"),
        ("DBACK_T_RATIO", "-0.1", "DBACK_T_RATIO must be at least 0, got '-0.1'"),
        ("DBACK_T_FLAG", "maybe", "DBACK_T_FLAG must be a boolean (1/0, yes/no), got 'maybe'"),
        ("DBACK_T_MODE", "slowest", "DBACK_T_MODE must be one of 'fast', 'Slow', got 'slowest'"),
    ],
)
def test_a_bad_value_raises_a_settings_error_naming_the_variable(variable, raw, message):
    with pytest.raises(SettingsError) as caught:
        read(SETTINGS, {variable: raw})
    assert str(caught.value) == message
    assert caught.value.variable == variable


def test_a_declaration_must_hold_settings():
    class Wrong:
        dback_settings = ("DBACK_T_TEXT",)

    with pytest.raises(TypeError, match="not a Setting"):
        declared(Wrong)
    with pytest.raises(TypeError, match="type must be"):
        Setting("DBACK_T_LIST", list)
    assert declared(object()) == ()


DECLARING = """
from dback_core import Setting, hookimpl

CONSTRUCTED = []

class Provider:
    dback_settings = (Setting("DBACK_TP_SET_LIMIT", int, 5, "a limit", minimum=1),)

    def __init__(self):
        CONSTRUCTED.append(self)

    @hookimpl
    def get_server_data(self):
        return {}
"""


def test_the_core_checks_a_declared_setting_before_constructing_the_plugin(site, monkeypatch):
    install_plugin(site, "tp-set", DECLARING, target="tp_set:Provider")
    monkeypatch.setenv("DBACK_TP_SET_LIMIT", "lots")
    plugins = load_plugins(environ={"DBACK_PLUGINS": "tp-set"})
    (record,) = plugins.records
    assert record.status == FAILED and record.bad_setting == "DBACK_TP_SET_LIMIT"
    assert plugins.fatal_problems() == [
        "plugin tp-set: DBACK_TP_SET_LIMIT must be an integer, got 'lots'"
    ]
    import tp_set

    assert tp_set.CONSTRUCTED == []


def test_a_bad_declaration_fails_only_that_plugin(site):
    install_plugin(
        site,
        "tp-baddecl",
        "from dback_core import hookimpl\ndback_settings = 'DBACK_X'\n"
        "@hookimpl\ndef get_server_data():\n    return {}\n",
    )
    (record,) = load_plugins(environ={"DBACK_PLUGINS": "tp-baddecl"}).records
    assert record.status == FAILED and "must be a sequence" in record.error


def test_a_bad_value_is_fatal_even_for_a_plugin_that_is_not_configured(monkeypatch):
    """Checked from the declaration, so a mistake shows before the DSN is even set."""
    monkeypatch.delenv("DBACK_POSTGRES_DSN", raising=False)
    monkeypatch.setenv("DBACK_POSTGRES_POOL_MAX", "ten")
    (record,) = load_plugins(environ={"DBACK_PLUGINS": "dback-postgres"}).records
    assert record.status == FAILED and record.bad_setting == "DBACK_POSTGRES_POOL_MAX"
    monkeypatch.delenv("DBACK_POSTGRES_POOL_MAX")
    (record,) = load_plugins(environ={"DBACK_PLUGINS": "dback-postgres"}).records
    assert record.status == NOT_CONFIGURED


def test_every_shipped_plugin_declares_its_settings():
    found = installed_settings()
    for name, prefix in [
        ("dback-mock", "DBACK_MOCK_"),
        ("dback-postgres", "DBACK_POSTGRES_"),
        ("dback-discord", "DBACK_DISCORD_"),
        ("dback-redis", "DBACK_REDIS_"),
    ]:
        assert found[name], name
        assert all(setting.variable.startswith(prefix) for setting in found[name])
    secrets = {s.variable for settings in found.values() for s in settings if s.secret}
    assert secrets == {
        "DBACK_MOCK_PASSWORD",
        "DBACK_DISCORD_TOKEN",
        "DBACK_REDIS_SENTINEL_PASSWORD",
    }
    urls = {s.variable for settings in found.values() for s in settings if s.url}
    assert urls == {"DBACK_POSTGRES_DSN", "DBACK_REDIS_URL", "DBACK_REDIS_SENTINELS"}


def _dback(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dback"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


@pytest.mark.slow
def test_dback_plugins_shows_values_with_secrets_masked():
    env = {
        "DBACK_MOCK_PASSWORD": "sesame-321",
        "DBACK_MOCK_INTERVAL": "0.5",
        "DBACK_POSTGRES_DSN": "postgresql://dback:hunter2@127.0.0.1:1/none",
        "DBACK_DISABLE_PLUGINS": "",
    }
    table = _dback("plugins", **env)
    assert table.returncode == 0, table.stderr
    assert "sesame-321" not in table.stdout and "hunter2" not in table.stdout
    assert "    DBACK_MOCK_PASSWORD: ***\n" in table.stdout
    assert "    DBACK_MOCK_INTERVAL: 0.5\n" in table.stdout
    assert "    DBACK_MOCK_SEED: unset\n" in table.stdout
    assert "    DBACK_POSTGRES_POOL_MAX: 10 (default)\n" in table.stdout
    assert "    DBACK_POSTGRES_DSN: postgresql://dback:***@127.0.0.1:1/none\n" in table.stdout

    as_json = _dback("plugins", "--json", **env)
    assert as_json.returncode == 0, as_json.stderr
    assert "sesame-321" not in as_json.stdout and "hunter2" not in as_json.stdout
    entries = {entry["name"]: entry for entry in json.loads(as_json.stdout)["plugins"]}
    mock = {setting["variable"]: setting for setting in entries["dback-mock"]["settings"]}
    assert mock["DBACK_MOCK_PASSWORD"]["value"] == "***"
    assert mock["DBACK_MOCK_PASSWORD"]["secret"] is True
    assert mock["DBACK_MOCK_INTERVAL"] | {"help": ""} == {
        "variable": "DBACK_MOCK_INTERVAL",
        "type": "float",
        "default": 3.0,
        "shown_default": "3",
        "value": "0.5",
        "secret": False,
        "url": False,
        "choices": [],
        "minimum": None,
        "help": "",
    }
    redis = {setting["variable"]: setting for setting in entries["dback-redis"]["settings"]}
    assert redis["DBACK_REDIS_ROLE"]["choices"] == ["auto", "publisher", "edge"]
    postgres = {setting["variable"]: setting for setting in entries["dback-postgres"]["settings"]}
    assert postgres["DBACK_POSTGRES_DSN"]["url"] is True
    assert postgres["DBACK_POSTGRES_DSN"]["value"] == "postgresql://dback:***@127.0.0.1:1/none"


@pytest.mark.slow
def test_serve_help_has_a_section_per_installed_plugin():
    result = _dback("serve", "--help")
    assert result.returncode == 0, result.stderr
    for name in ("dback-mock", "dback-postgres", "dback-discord", "dback-redis"):
        assert f"\nPlugin {name}:\n" in result.stdout
    mock_section = result.stdout.split("\nPlugin dback-mock:\n", 1)[1].split("\nPlugin ", 1)[0]
    assert "DBACK_MOCK_INTERVAL" in mock_section and "default: 3" in mock_section
    assert "DBACK_MOCK_PASSWORD" in mock_section and "secret" in mock_section


async def test_api_plugins_shows_the_settings_with_secrets_masked(mock_server):
    """``mock_server`` sets DBACK_MOCK_PASSWORD=sesame: it must not leave the server."""
    status, _headers, body = await asyncio.to_thread(get, mock_server, "/api/plugins")
    assert status == 200 and b"sesame" not in body
    (mock,) = [entry for entry in json.loads(body)["plugins"] if entry["name"] == "dback-mock"]
    values = {setting["variable"]: setting["value"] for setting in mock["settings"]}
    assert values == {
        "DBACK_MOCK_INTERVAL": "0.05",
        "DBACK_MOCK_SEED": "7",
        "DBACK_MOCK_PASSWORD": "***",
    }
