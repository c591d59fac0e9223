"""``dback new-plugin``: the package it writes installs, passes its own tests, is listed and
served - all in a fresh virtual environment where docs/plugins.md's steps installed dback-core
from a copy of this checkout (not editable), with nothing of ours fetched from a package index."""

from __future__ import annotations

import getpass
import json
import logging
import os
import pty
import re
import select
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from dback_core.ops.scaffold import core_range, placeholders, write_plugin
from dback_core.testing import Client
from tests.support import fresh_venv
from tests.support.fresh_venv import environment

log = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
NAME = "dback-sunny"


def new_plugin(*arguments: str, cwd: Path, **environ: str) -> subprocess.CompletedProcess:
    """The real ``dback new-plugin`` without a terminal, git's settings from ``environ``."""
    return subprocess.run(
        [str(BIN / "dback"), "new-plugin", *arguments],
        cwd=cwd,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=60,
        env={**os.environ, **environ},
    )


def git_identity(tmp_path: Path, name: str = "", email: str = "") -> dict[str, str]:
    """The environment of an author whose global git config holds ``name`` and ``email``
    (none at all when both are empty)."""
    config = tmp_path / "gitconfig"
    lines = ["[user]", f"\tname = {name}" if name else "", f"\temail = {email}" if email else ""]
    config.write_text("\n".join(lines) + "\n" if name or email else "")
    return {"GIT_CONFIG_GLOBAL": str(config), "GIT_CONFIG_NOSYSTEM": "1"}


def workflow_commands(path: Path) -> list[str]:
    """Every ``run:`` of a workflow, which must parse as YAML with at least one job."""
    workflow = yaml.safe_load(path.read_text())
    assert workflow["jobs"], path
    assert True in workflow or "on" in workflow, path  # YAML 1.1 reads ``on:`` as True
    return [
        step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step
    ]


PLACEHOLDER = re.compile(r"\{\{\s*[a-z_]+\s*\}\}")


def test_the_package_has_every_file_and_names_the_plugin_throughout(tmp_path):
    result = new_plugin(
        NAME, cwd=tmp_path, **git_identity(tmp_path, "Ada Lovelace", "ada@x.example")
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # the name has the dback- prefix: no warning
    target = tmp_path / NAME
    written = sorted(str(path.relative_to(target)) for path in target.rglob("*") if path.is_file())
    assert written == [
        ".github/workflows/ci.yml",
        ".github/workflows/release.yml",
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
    # git's identity fills what no option gave; without a terminal nothing is asked.
    assert project["authors"] == [{"name": "Ada Lovelace", "email": "ada@x.example"}]
    assert "Copyright (c) 20" in (target / "LICENSE").read_text()
    assert " Ada Lovelace\n" in (target / "LICENSE").read_text()
    assert "YOUR NAME" not in (target / "LICENSE").read_text()
    assert "urls" not in project
    assert "No --url" in result.stdout
    for path in target.rglob("*"):
        if path.is_file():
            assert not PLACEHOLDER.search(path.read_text()), path


def test_the_workflows_run_the_tests_and_build_and_check_the_release(tmp_path):
    result = new_plugin(NAME, cwd=tmp_path, **git_identity(tmp_path, "Ada"))
    assert result.returncode == 0, result.stderr
    workflows = tmp_path / NAME / ".github" / "workflows"
    ci = workflow_commands(workflows / "ci.yml")
    assert ci == ["python -m pip install -e '.[test]'", "python -m pytest"]
    release = workflow_commands(workflows / "release.yml")
    assert release[:3] == [
        "python -m pip install build twine",
        "python -m build",
        "python -m twine check --strict dist/*",
    ]
    published = yaml.safe_load((workflows / "release.yml").read_text())["jobs"]["publish"]
    assert published["permissions"] == {"id-token": "write"}
    assert published["needs"] == "build"


@pytest.mark.slow
def test_the_release_workflows_build_and_check_pass_on_the_package(tmp_path):
    """The release workflow's build and check, run on the package as written (offline:
    ``--no-isolation`` with this environment's setuptools), with every option given."""
    result = new_plugin(
        NAME,
        "--author",
        'Grace "Amazing" Hopper',
        "--email",
        "grace@x.example",
        "--url",
        "https://github.com/grace/dback-sunny",
        "--description",
        "Sunny days for d-zone",
        cwd=tmp_path,
        **git_identity(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    package = tmp_path / NAME
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    assert project["authors"] == [{"name": 'Grace "Amazing" Hopper', "email": "grace@x.example"}]
    assert project["description"] == "Sunny days for d-zone"
    assert project["urls"]["Homepage"] == "https://github.com/grace/dback-sunny"
    assert 'Grace "Amazing" Hopper' in (package / "LICENSE").read_text()
    assert "No --url" not in result.stdout
    python = str(BIN / "python")
    _run([python, "-m", "build", "--no-isolation", "--outdir", "dist", "."], cwd=package)
    built = sorted(path.name for path in (package / "dist").iterdir())
    assert built == ["dback_sunny-0.1.0-py3-none-any.whl", "dback_sunny-0.1.0.tar.gz"]
    checked = _run(
        [python, "-m", "twine", "check", "--strict", *(f"dist/{n}" for n in built)], cwd=package
    )
    assert checked.stdout.count("PASSED") == 2, checked.stdout


@pytest.mark.slow
def test_on_a_terminal_it_asks_with_gits_identity_as_the_default(tmp_path):
    """A real pseudo-terminal: Enter keeps git's name, the other answers are typed."""
    environ = {**os.environ, **git_identity(tmp_path, "Ada Lovelace", "ada@x.example")}
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [str(BIN / "dback"), "new-plugin", "weather"],
        cwd=tmp_path,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=environ,
    )
    os.close(terminal)
    seen = ""
    answers = iter(["\n", "Weather as walkers\n", "\n", "https://github.com/ada/weather\n"])
    try:
        while True:  # until the command ends and its terminal closes
            ready, _, _ = select.select([controller], [], [], 30)
            assert ready, seen
            try:
                chunk = os.read(controller, 4096).decode()
            except OSError:
                break
            seen += chunk
            if chunk.rstrip().endswith(":"):
                os.write(controller, next(answers).encode())
    finally:
        os.close(controller)
    assert process.wait(30) == 0, seen
    assert "Author (LICENSE holder) [Ada Lovelace]:" in seen
    assert "E-mail (empty: none) [ada@x.example]:" in seen
    assert "lacks the 'dback-' prefix" in seen and "consider dback-weather" in seen
    project = tomllib.loads((tmp_path / "weather" / "pyproject.toml").read_text())["project"]
    assert project["authors"] == [{"name": "Ada Lovelace", "email": "ada@x.example"}]
    assert project["description"] == "Weather as walkers"
    assert project["urls"]["Source"] == "https://github.com/ada/weather"


@pytest.mark.slow
def test_without_git_or_a_terminal_the_login_name_holds_the_license(tmp_path):
    result = new_plugin(NAME, cwd=tmp_path, **git_identity(tmp_path))
    assert result.returncode == 0, result.stderr
    project = tomllib.loads((tmp_path / NAME / "pyproject.toml").read_text())["project"]
    assert project["authors"] == [{"name": getpass.getuser()}]
    assert f" {getpass.getuser()}\n" in (tmp_path / NAME / "LICENSE").read_text()


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
