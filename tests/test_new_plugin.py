"""``dback new-plugin``: the package it writes installs, passes its own tests, is listed and
served - all in a fresh virtual environment where docs/plugins.md's steps installed dback-core
from a copy of this checkout (not editable), with nothing of ours fetched from a package index."""

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

from dback_core.ops.scaffold import HOLDER, core_range, placeholders, write_plugin
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


def _author_steps() -> list[str]:
    """docs/plugins.md's "Start from `dback new-plugin`" commands, but the last (it serves
    until stopped; the test below serves with a client instead)."""
    guide = (fresh_venv.ROOT / "docs" / "plugins.md").read_text()
    section = guide.split("## Start from `dback new-plugin`", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    lines = block.strip().splitlines()
    assert lines[-1] == f"DBACK_PLUGINS={NAME} dback serve"
    return lines[:-1]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, Path]:
    """docs/plugins.md's steps run as written by bash, beside a clean copy of this checkout
    in ``./dback``, in a fresh venv: (venv, generated package folder)."""
    base = tmp_path_factory.mktemp("new-plugin")
    fresh_venv.copy_core(base / "dback")
    # The guide's ``python3.11``: this interpreter, whatever the machine calls it.
    interpreters = base / "interpreters"
    interpreters.mkdir()
    (interpreters / "python3.11").symlink_to(Path(sys.executable).resolve())
    shell = environment(base / ".venv")
    shell["PATH"] = f"{interpreters}:{shell['PATH']}"
    script = "set -euo pipefail\n" + "\n".join(_author_steps()) + "\n"
    done = _run(["bash", "-c", script], cwd=base, env=shell)
    assert "4 passed" in done.stdout, done.stdout
    assert f"{NAME} 0.1.0: active" in done.stdout, done.stdout
    return base / ".venv", base / NAME


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
    assert description["order"] == [NAME]  # dback-core brought no plugin along
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
