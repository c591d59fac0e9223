"""Every package in this repository could be published, and dback-core alone serves a world.

Each package is built from a clean copy of its sources (sdist, then the wheel from it) with
``python -m build --no-isolation`` - offline, with the build backend of this environment -
and checked with ``twine check --strict`` and against what an index and its users need: an
SPDX licence with the licence file, known classifiers, a README, version ranges on dback-core.

Then dback-core's wheel is installed alone into a fresh virtual environment with
``--no-index``, so nothing of ours can come from a package index: it must need no other
package of ours, and its ``dback serve`` must say what to install. README's one command
(dback-core and the mock from a checkout) must give a server that serves D-World.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from trove_classifiers import classifiers as KNOWN_CLASSIFIERS

from dback_core.testing import Client
from tests.support import fresh_venv

pytestmark = pytest.mark.slow

log = logging.getLogger(__name__)

ROOT = fresh_venv.ROOT

#: distribution name -> its source folder (dback-core's is the repository's root)
PACKAGES: dict[str, Path] = {
    "dback-core": ROOT,
    "dback-compat": ROOT / "compat",
    "dback-mock": ROOT / "plugins" / "dback_mock",
    "dback-postgres": ROOT / "plugins" / "dback_postgres",
    "dback-discord": ROOT / "plugins" / "dback_discord",
    "dback-redis": ROOT / "plugins" / "dback_redis",
}
PLUGINS = ("dback-mock", "dback-postgres", "dback-discord", "dback-redis")


def _copy(name: str, destination: Path) -> Path:
    """A clean copy of the package's sources, so no earlier build output is packed."""
    if name == "dback-core":
        return fresh_venv.copy_core(destination / name)
    shutil.copytree(PACKAGES[name], destination / name, ignore=fresh_venv.CLEAN)
    return destination / name


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Every package built once: name -> (sdist, wheel)."""
    base = tmp_path_factory.mktemp("packages")
    dist = base / "dist"
    artifacts: dict[str, tuple[Path, Path]] = {}
    for name in PACKAGES:
        source = _copy(name, base / "src")
        started = time.perf_counter()
        build = subprocess.run(
            [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert build.returncode == 0, build.stdout + build.stderr
        log.info("built %s in %.1fs", name, time.perf_counter() - started)
        stem = name.replace("-", "_")
        (sdist,) = dist.glob(f"{stem}-*.tar.gz")
        (wheel,) = dist.glob(f"{stem}-*.whl")
        artifacts[name] = (sdist, wheel)
    return artifacts


def _metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(archive.read(name).decode())


def _wheel_files(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


@pytest.mark.parametrize("name", list(PACKAGES))
def test_twine_check_passes(built, name):
    sdist, wheel = built[name]
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("name", list(PACKAGES))
def test_metadata_is_complete(built, name):
    sdist, wheel = built[name]
    metadata = _metadata(wheel)
    assert metadata["Name"] == name
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert any(path.endswith(".dist-info/licenses/LICENSE") for path in _wheel_files(wheel))
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert len(metadata.get_payload()) > 500, "the README is the description"
    declared = metadata.get_all("Classifier")
    assert declared
    assert set(declared) <= KNOWN_CLASSIFIERS
    assert "Programming Language :: Python :: 3.11" in declared
    # No project URL is invented; d-zone-org hosts the client, not this project.
    assert "d-zone-org" not in str(metadata.get_all("Project-URL"))
    with tarfile.open(sdist) as archive:
        names = {Path(member).name for member in archive.getnames()}
    assert {"LICENSE", "README.md", "pyproject.toml"} <= names


@pytest.mark.parametrize("name", [*PLUGINS, "dback-compat"])
def test_depends_on_a_range_of_dback_core(built, name):
    requirements = [
        Requirement(text) for text in _metadata(built[name][1]).get_all("Requires-Dist")
    ]
    (core,) = [requirement for requirement in requirements if requirement.name == "dback-core"]
    assert "0.1.0" in core.specifier
    assert "0.2.0" not in core.specifier


@pytest.mark.parametrize("name", PLUGINS)
def test_every_plugin_has_its_entry_point(built, name):
    with zipfile.ZipFile(built[name][1]) as archive:
        (path,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        entry_points = archive.read(path).decode()
    assert f"[dback]\n{name} = " in entry_points


def test_dback_core_ships_py_typed_and_its_status_page_but_not_d_back(built):
    files = _wheel_files(built["dback-core"][1])
    assert "dback_core/py.typed" in files
    assert "dback_core/serving/status_page/index.html" in files
    assert not [path for path in files if path.startswith("d_back/")]
    requirements = [
        Requirement(text) for text in _metadata(built["dback-core"][1]).get_all("Requires-Dist")
    ]
    # No package of ours: the plugins depend on dback-core, never the other way round.
    assert not [requirement for requirement in requirements if requirement.name.startswith("dback")]


def test_dback_compat_ships_d_back_and_its_command(built):
    wheel = built["dback-compat"][1]
    files = _wheel_files(wheel)
    assert {"d_back/__init__.py", "d_back/server.py", "d_back/__main__.py"} <= set(files)
    with zipfile.ZipFile(wheel) as archive:
        (path,) = [n for n in files if n.endswith(".dist-info/entry_points.txt")]
        assert "d_back = d_back.cli:main" in archive.read(path).decode()


# -- a fresh environment with dback-core alone ------------------------------------------------


def _environment(venv: Path) -> dict[str, str]:
    return fresh_venv.environment(venv, DBACK_MOCK_INTERVAL="0.2")


@pytest.fixture(scope="module")
def core_alone(built, tmp_path_factory) -> Path:
    """A fresh venv where ``pip install --no-index dback-core`` found dback-core's wheel and
    no other of ours: it needs none.

    The third-party dependencies (websockets, pluggy, ...) are installed first, as pip would
    fetch them; dback-core then comes from its built wheel and nowhere else.
    """
    base = tmp_path_factory.mktemp("core-alone")
    wheels = base / "wheels"
    wheels.mkdir()
    shutil.copy(built["dback-core"][1], wheels)
    venv = base / "venv"
    pip = fresh_venv.create(venv)
    third_party = sorted(_metadata(built["dback-core"][1]).get_all("Requires-Dist"))
    started = time.perf_counter()
    for arguments in (
        [*pip, "install", *third_party],
        [*pip, "install", "--no-index", "--find-links", str(wheels), "dback-core"],
        [*pip, "check"],
    ):
        done = subprocess.run(arguments, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    log.info("fresh venv with dback-core installed in %.1fs", time.perf_counter() - started)
    return venv


@pytest.mark.network
def test_dback_core_installs_alone_and_serve_says_what_to_install(core_alone):
    environ = _environment(core_alone)
    assert fresh_venv.described(core_alone, environ)["order"] == []
    refused = subprocess.run(
        [str(core_alone / "bin" / "dback"), "serve", "--port", "0"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: no plugin is installed, so there is nothing to serve")
    assert "pip install ./plugins/dback_mock" in refused.stderr
    assert not (core_alone / "bin" / "d_back").exists()


# -- the README's one command: dback-core and the mock from a checkout ----------------------

#: The command README.md gives a fresh user, run in a copy of the checkout.
ONE_COMMAND = "pip install ./ ./plugins/dback_mock"


@pytest.fixture(scope="module")
def one_command(tmp_path_factory) -> Path:
    """A fresh venv after README's one command, in a clean copy of this checkout."""
    base = tmp_path_factory.mktemp("one-command")
    checkout = fresh_venv.copy_core(base / "dback")
    fresh_venv.copy_mock(checkout / "plugins" / "dback_mock")
    venv = base / "venv"
    pip = fresh_venv.create(venv)
    started = time.perf_counter()
    done = subprocess.run(
        [*pip, *ONE_COMMAND.split()[1:]], cwd=checkout, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    log.info("fresh venv after the one command in %.1fs", time.perf_counter() - started)
    return venv


def test_the_readme_and_the_guides_give_the_one_command():
    for document in ("README.md", "plugins/dback_mock/README.md"):
        assert ONE_COMMAND in (ROOT / document).read_text(), document


@pytest.mark.network
def test_the_one_command_installs_the_mock_as_the_only_plugin(one_command):
    description = fresh_venv.described(one_command, _environment(one_command))
    assert description["order"] == ["dback-mock"]
    (entry,) = description["plugins"]
    assert (entry["version"], entry["status"], entry["fallback_only"]) == ("0.1.0", "active", True)


@pytest.mark.network
async def test_the_one_command_serves_d_world(one_command):
    async with fresh_venv.serving(one_command, _environment(one_command)) as served:
        async with Client(f"ws://127.0.0.1:{served.port}", timeout=30) as client:
            assert client.server_list["232769614004748288"]["name"] == "D-World"
            world = await client.join("default")
            assert world["type"] == "server-join"
            assert len(world["data"]["users"]) == 40
            change = await client.recv_type("presence")
            assert change["server"] == "232769614004748288"
    assert served.process.returncode == 0
