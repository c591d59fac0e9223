"""docs/configuration.md lists every setting with its real default, and nothing that is not one.

The core table is checked against the core's declarations (``CORE_SETTINGS``), ``Settings``
and the ``dback`` command line; each plugin's section against the settings the plugin
declares (``dback_core.plugin.settings``).
"""

from __future__ import annotations

import tomllib
from dataclasses import MISSING, fields
from pathlib import Path

import click
import pytest

from dback_core.loading import plugins as plugin_loading
from dback_core.ops.cli import cli
from dback_core.plugin.server_settings import CORE_SETTINGS, Settings

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / "docs" / "configuration.md").read_text()


def section(title: str) -> str:
    assert f"\n## {title}\n" in TEXT, f"docs/configuration.md has no '## {title}' section"
    return TEXT.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def table(text: str) -> dict[str, list[str]]:
    """Rows of the markdown tables in ``text``, keyed by their first cell without backticks."""
    rows = {}
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


CORE = table(section("Core"))


def rendered(value: object) -> str:
    if value is None:
        return "`none`"
    if value == "":
        return '`""`'
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def serve_options() -> list[click.Option]:
    return [param for param in cli.commands["serve"].params if isinstance(param, click.Option)]


@pytest.mark.parametrize("field", fields(Settings), ids=lambda field: field.name)
def test_every_setting_is_documented_with_its_default(field):
    variable = f"DBACK_{field.name.upper()}"
    assert variable in CORE, f"{variable} is missing from docs/configuration.md"
    option, default = CORE[variable][0], CORE[variable][1]
    expected = field.default if field.default is not MISSING else field.default_factory()
    assert default == rendered(expected), f"{variable}: documented default {default}"
    flag = "--" + field.name.replace("_", "-")
    documented_flag = option.strip("`") or None
    offered = {opt for param in serve_options() for opt in param.opts}
    assert documented_flag == (flag if flag in offered else None), variable


@pytest.mark.parametrize("option", serve_options(), ids=lambda option: option.name)
def test_every_serve_option_is_documented_with_its_variable_and_default(option):
    assert option.envvar, f"--{option.name} has no environment variable"
    row = CORE.get(option.envvar)
    assert row is not None, f"{option.envvar} is missing from docs/configuration.md"
    assert row[0] == f"`{option.opts[0]}`"
    default = option.to_info_dict()["default"]  # None for "no default", in every click
    assert row[1] == rendered(default), f"{option.envvar}: documented default {row[1]}"


def test_every_other_command_option_is_documented():
    options = {opt for param in cli.params for opt in param.opts}
    for name, command in cli.commands.items():
        if name != "serve":
            options |= {
                opt
                for param in command.params
                if isinstance(param, click.Option)
                for opt in param.opts
            }
    options.add("--help")
    for option in options:
        assert f"`{option}`" in TEXT, f"{option} is missing from docs/configuration.md"


def test_the_core_table_is_the_core_s_declarations_in_their_order():
    assert list(CORE) == [setting.variable for setting in CORE_SETTINGS]


@pytest.mark.parametrize("setting", CORE_SETTINGS, ids=lambda setting: setting.variable)
def test_every_core_declaration_is_documented_with_its_default(setting):
    """A default of None is documented in words (``all installed``) or as ``none``."""
    documented = CORE[setting.variable][1]
    if setting.default is None:
        assert not documented.startswith("`") or documented == "`none`", documented
    else:
        assert documented == rendered(setting.default), setting.variable


def test_every_variable_the_core_reads_is_declared():
    declared = {setting.variable for setting in CORE_SETTINGS}
    assert {f"DBACK_{field.name.upper()}" for field in fields(Settings)} <= declared
    assert {option.envvar for option in serve_options()} <= declared
    assert {
        plugin_loading.PLUGINS_ENV,
        plugin_loading.DISABLE_ENV,
        plugin_loading.STRICT_ENV,
    } <= declared


def _plugin_names() -> list[str]:
    return sorted(
        tomllib.loads(path.read_text())["project"]["name"]
        for path in ROOT.glob("plugins/*/pyproject.toml")
    )


@pytest.mark.parametrize("name", _plugin_names())
def test_every_plugin_setting_is_documented_with_its_default(name):
    """The plugin's table lists exactly the variables it declares, with their defaults."""
    declared = plugin_loading.installed_settings()[name]
    documented = table(section(f"Plugin {name}"))
    assert declared, f"{name} declares no settings?"
    assert set(documented) == {setting.variable for setting in declared}
    for setting in declared:
        assert documented[setting.variable][0] == rendered(setting.shown_default), (
            f"{setting.variable}: documented default {documented[setting.variable][0]}"
        )
