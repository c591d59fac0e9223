"""``dback new-plugin``: the package it writes installs, passes its own tests, is listed and
served - all in a fresh virtual environment holding dback-core built from this repository
(not editable), with nothing of ours fetched from a package index."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from dback_core.scaffold import HOLDER, core_range, placeholders, write_plugin
from dback_core.testing import Client
from tests.support import fresh_venv
from tests.support.fresh_venv import environment

log = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
NAME = "dback-sunny"


def test_the_package_has_every_file_and_names_the_plugin_throughout(tmp_path):
    result = subprocess.run(
        [str(BIN / "dback"), "new-plugin", NAME],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    target = tmp_path / NAME
    written = sorted(str(path.relative_to(target)) for path in target.rglob("*") if path.is_file())
    assert written == [
        "LICENSE",
        "README.md",
        "dback_sunny/__init__.py",
        "dback_sunny/plugin.py",
        "pyproject.toml",
        "tests/test_plugin.py",
    ]
    project = tomllib.loads((target / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["dback"] == {NAME: "dback_sunny.plugin:SunnyPlugin"}
    (core,) = [Requirement(text) for text in project["dependencies"]]
    assert core.name == "dback-core" and "0.1.0" in core.specifier
    assert "0.2.0" not in core.specifier
    assert project["license"] == "MIT"
    assert HOLDER in (target / "LICENSE").read_text()
    assert f"it says {HOLDER!r}" in result.stdout
    for path in target.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(), path


@pytest.mark.slow
def test_an_existing_folder_or_a_bad_name_is_refused(tmp_path):
    (tmp_path / NAME).mkdir()
    (tmp_path / NAME / "keep.txt").write_text("mine")
    for name in (NAME, "2cool", "has space", "dback", "class"):
        result = subprocess.run(
            [str(BIN / "dback"), "new-plugin", name, "--dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1, name
        assert result.stderr.startswith("Error: "), result.stderr
    assert [path.name for path in (tmp_path / NAME).iterdir()] == ["keep.txt"]


def test_names_become_a_module_a_class_and_a_settings_prefix(tmp_path):
    values = placeholders("dback-solar-wind")
    assert (values["module"], values["class_name"], values["prefix"]) == (
        "dback_solar_wind",
        "SolarWindPlugin",
        "DBACK_SOLAR_WIND",
    )
    assert len(values["guild"]) == 18 and values["guild"] != placeholders(NAME)["guild"]
    assert core_range("0.1.3") == ">=0.1,<0.2"
    assert core_range("1.4.0") == ">=1.4,<2.0"
    assert write_plugin("Dback_Solar_Wind", tmp_path).name == "dback-solar-wind"


# -- the whole path, as an author takes it -------------------------------------------------


def _run(arguments: list[str], **options) -> subprocess.CompletedProcess:
    started = time.perf_counter()
    done = subprocess.run(arguments, capture_output=True, text=True, timeout=600, **options)
    log.info("%s: %.1fs", " ".join(arguments[-3:]), time.perf_counter() - started)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, Path]:
    """A fresh venv with dback-core[testing] from this repo, and the generated package
    installed into it: (venv, package folder)."""
    base = tmp_path_factory.mktemp("new-plugin")
    core = fresh_venv.copy_core(base / "dback-core")
    mock = fresh_venv.copy_mock(base / "dback-mock")
    venv = base / "venv"
    pip = fresh_venv.create(venv)
    meta = tomllib.loads((fresh_venv.ROOT / "pyproject.toml").read_text())["project"]
    third_party = [
        text
        for text in [*meta["dependencies"], *meta["optional-dependencies"]["testing"]]
        if not Requirement(text).name.startswith("dback-")
    ]
    # What pip would fetch for any user; everything of ours comes from the folders below.
    _run([*pip, "install", "setuptools>=77", *third_party])
    offline = [*pip, "install", "--no-index", "--no-build-isolation"]
    _run([*offline, f"{core}[testing]", str(mock)])
    _run(
        [str(venv / "bin" / "dback"), "new-plugin", NAME],
        cwd=base,
        env=environment(venv),
    )
    _run([*offline, str(base / NAME)])
    return venv, base / NAME


@pytest.mark.network
@pytest.mark.slow
def test_the_generated_tests_pass_as_generated(generated):
    venv, package = generated
    # The shell's DBACK_* variables must not reach the tests (the fixture removes them).
    shell = environment(venv, DBACK_PLUGINS="dback-nothing", DBACK_SUNNY_INTERVAL="soon")
    done = _run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=package,
        env=shell,
    )
    assert "4 passed" in done.stdout, done.stdout


@pytest.mark.network
@pytest.mark.slow
def test_dback_plugins_lists_it_active(generated):
    venv, _package = generated
    listed = _run([str(venv / "bin" / "dback"), "plugins", "--json"], env=environment(venv))
    description = json.loads(listed.stdout)
    assert description["order"] == [NAME, "dback-mock"]
    entry = description["plugins"][0]
    assert (entry["name"], entry["status"], entry["version"]) == (NAME, "active", "0.1.0")
    assert [setting["variable"] for setting in entry["settings"]] == [
        "DBACK_SUNNY_INTERVAL",
        "DBACK_SUNNY_GUILD_NAME",
    ]


@pytest.mark.network
@pytest.mark.slow
async def test_dback_serve_serves_its_guild_to_a_websocket_client(generated):
    venv, _package = generated
    environ = environment(venv, DBACK_PLUGINS=NAME, DBACK_SUNNY_INTERVAL="0.1")
    guild = placeholders(NAME)["guild"]
    async with fresh_venv.serving(venv, environ) as served:
        async with Client(f"ws://127.0.0.1:{served.port}", timeout=30) as client:
            assert list(client.server_list) == [guild]
            assert client.server_list[guild]["name"] == "Sunny"
            world = await client.join("sunny")
            assert world["type"] == "server-join"
            assert len(world["data"]["users"]) == 5
            change = await client.recv_type("presence")
            assert change["server"] == guild
    assert served.process.returncode == 0
