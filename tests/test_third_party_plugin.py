"""The path a third party takes: a plugin in its own folder, pip-installed beside dback-core.

The plugin is the tutorial's, taken from docs/plugins.md as written. It is installed with pip
into a fresh virtual environment together with dback-core and the embedded mock it depends on
(clean copies of this repository's sources, so no earlier build output can slip into the
install); then the
installed ``dback`` command must list it, and ``dback serve`` must serve its guild to a
WebSocket client and agree with ``dback plugins`` on names, versions and order.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from dback_core.testing import Client
from tests.support import fresh_venv
from tests.support.http_get import fetch

pytestmark = [pytest.mark.network, pytest.mark.slow]

GUIDE = (fresh_venv.ROOT / "docs" / "plugins.md").read_text()
WEATHER_GUILD = "700000000000000001"


def _block(heading: str, language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", GUIDE.split(heading, 1)[1], flags=re.DOTALL)
    assert match, f"docs/plugins.md: no {language} block after {heading!r}"
    return match.group(1)


def _environment(venv: Path) -> dict[str, str]:
    return fresh_venv.environment(venv, DBACK_WEATHER_INTERVAL="0.2")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A new virtual environment with dback-core (with its pytest fixtures) and the
    tutorial plugin pip-installed."""
    base = tmp_path_factory.mktemp("third-party")
    project = base / "dback-weather"
    (project / "dback_weather").mkdir(parents=True)
    (project / "pyproject.toml").write_text(_block("### 2. `pyproject.toml`", "toml"))
    (project / "dback_weather" / "__init__.py").write_text("")
    (project / "dback_weather" / "plugin.py").write_text(
        _block("### 3. `dback_weather/plugin.py`", "python")
    )
    core = fresh_venv.copy_core(base / "dback-core")
    mock = fresh_venv.copy_mock(base / "dback-mock")
    venv = base / "venv"
    pip = fresh_venv.create(venv)
    install = subprocess.run(
        [*pip, "install", f"{core}[testing]", str(mock), str(project)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return venv


def test_dback_plugins_lists_the_installed_plugin(installed):
    description = fresh_venv.described(installed, _environment(installed))
    # the mock came with dback-core; an embedded default, it goes last and steps aside
    assert description["order"] == ["dback-weather", "dback-mock"]
    entry, mock = description["plugins"]
    assert entry["name"] == "dback-weather"
    assert (mock["name"], mock["fallback_only"]) == ("dback-mock", True)
    assert entry["version"] == "0.1.0"
    assert entry["status"] == "active"
    assert entry["hooks"] == ["event_sources", "get_server_data", "get_user_data"]
    (interval,) = entry["settings"]
    assert (interval["variable"], interval["value"]) == ("DBACK_WEATHER_INTERVAL", "0.2")


async def test_dback_serve_serves_the_plugins_data(installed):
    environ = _environment(installed)
    listed = fresh_venv.described(installed, environ)
    async with fresh_venv.serving(installed, environ) as dback:
        async with Client(f"ws://127.0.0.1:{dback.port}", timeout=30) as client:
            assert client.server_list[WEATHER_GUILD]["name"] == "Weather"
            assert list(client.server_list) == [WEATHER_GUILD]  # the mock stepped aside
            world = await client.join("weather")
            assert world["type"] == "server-join"
            users = world["data"]["users"]
            assert {user["username"] for user in users.values()} == {"Berlin", "Lisbon", "Oslo"}
            assert users["1001"]["status"] == "online"
            change = await client.recv_type("presence")
            assert change["server"] == WEATHER_GUILD
            assert change["data"]["uid"] in users
        served = (await fetch(dback.port, "/api/plugins")).content()
    assert dback.process.returncode == 0
    assert served["order"] == listed["order"] == ["dback-weather", "dback-mock"]

    def names_and_versions(description):
        return [(entry["name"], entry["version"]) for entry in description["plugins"]]

    assert names_and_versions(served) == names_and_versions(listed)


def test_the_guide_s_fixture_example_passes_against_the_installed_plugin(installed, tmp_path):
    """ "Testing a plugin" with dback-core's pytest fixtures, as written, in a shell whose
    DBACK_* variables would break it if they reached the test."""
    (tmp_path / "test_weather.py").write_text(_block("### With the pytest fixtures", "python"))
    shell = {**_environment(installed), "DBACK_PLUGINS": "dback-mock"}
    shell["DBACK_WEATHER_INTERVAL"] = "never"
    pytest = [str(installed / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [*pytest, "-o", "asyncio_mode=auto", "test_weather.py"],
        cwd=tmp_path,
        env=shell,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_the_guide_s_publish_step_builds_where_its_comment_says(tmp_path):
    """ "5. Publish" as written, but offline (``--no-isolation``, this environment's
    setuptools) and without the upload: the wheel and sdist land where the comments say and
    pass ``twine check``."""
    project = tmp_path / "dback-weather"
    (project / "dback_weather").mkdir(parents=True)
    (project / "pyproject.toml").write_text(_block("### 2. `pyproject.toml`", "toml"))
    (project / "dback_weather" / "__init__.py").write_text("")
    (project / "dback_weather" / "plugin.py").write_text(
        _block("### 3. `dback_weather/plugin.py`", "python")
    )
    steps = _block("### 5. Publish", "sh")
    promised = re.findall(r"(dback-weather/dist/\S+)", steps)
    assert len(promised) >= 2, steps
    python = str(Path(sys.executable))
    built = subprocess.run(
        [python, "-m", "build", "--no-isolation", "dback-weather"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    artifacts = {path for path in promised if "*" not in path}
    for path in artifacts:
        assert (tmp_path / path).is_file(), f"{path} promised by the guide was not built"
    assert "twine check dback-weather/dist/*" in steps
    checked = subprocess.run(
        [python, "-m", "twine", "check", *sorted(artifacts)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0 and checked.stdout.count("PASSED") == 2, checked.stdout
