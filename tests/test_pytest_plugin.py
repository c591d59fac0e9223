"""dback-core's pytest plugin, as a plugin author's project meets it: found through the
``pytest11`` entry point by a pytest run with no conftest, in a shell full of DBACK_*
variables that must not reach the test."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

AUTHOR_TESTS = """
import socket

import pytest

from dback_core.plugin.errors import PluginError

MOCK_DEFAULT = "232769614004748288"
ADDRESSES = []


def test_the_shell_s_variables_are_gone(dback_environ):
    assert [name for name in dback_environ if name.startswith("DBACK_")] == []


@pytest.mark.asyncio
async def test_a_server_with_exactly_the_named_plugin(dback):
    server = await dback.start(
        "dback-mock", environ={"DBACK_MOCK_SEED": "7", "DBACK_MOCK_INTERVAL": "0.05"}
    )
    ADDRESSES.append(server.address)
    assert server.plugins()["order"] == ["dback-mock"]
    assert server.host.plugin_name == "dback-mock"
    assert MOCK_DEFAULT in server.host.guild_list()
    client = await dback.client(server)
    assert MOCK_DEFAULT in client.server_list
    world = await client.join("default")
    assert world["type"] == "server-join"
    presence = await client.recv_type("presence")
    assert presence["server"] == MOCK_DEFAULT


def test_the_server_was_stopped_after_its_test():
    (address,) = ADDRESSES
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=5)


@pytest.mark.asyncio
async def test_in_process_plugins_alone(dback):
    class Provider:
        from dback_core import hookimpl

        @hookimpl
        def get_server_data(self):
            return {"555": {"id": "five", "name": "Five", "passworded": False}}

    server = await dback.start(in_process=[("mine", Provider())])
    client = await dback.client(server)
    assert list(client.server_list) == ["555"]


@pytest.mark.asyncio
async def test_what_dback_serve_refuses_is_raised(dback):
    with pytest.raises(PluginError, match="dback-postgres named in DBACK_PLUGINS is not config"):
        await dback.start("dback-postgres")
    with pytest.raises(PluginError, match="DBACK_MOCK_INTERVAL must be a number, got 'soon'"):
        await dback.start("dback-mock", environ={"DBACK_MOCK_INTERVAL": "soon"})
"""


@pytest.mark.slow
def test_an_author_s_tests_use_the_fixtures_isolated_from_the_shell(tmp_path: Path):
    (tmp_path / "test_author.py").write_text(textwrap.dedent(AUTHOR_TESTS))
    shell = {
        **os.environ,
        # Each of these would change what the tests see if it leaked into them.
        "DBACK_PLUGINS": "dback-nothing",
        "DBACK_DISABLE_PLUGINS": "dback-mock",
        "DBACK_MOCK_INTERVAL": "fast",
        "DBACK_POSTGRES_DSN": "postgresql://dback@127.0.0.1:5432/postgres",
        "DBACK_STRICT_PLUGINS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_author.py"],
        cwd=tmp_path,
        env=shell,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout, result.stdout


def test_the_plugin_is_registered_through_the_pytest11_entry_point():
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="pytest11") if e.value == "dback_core.pytest_plugin"]
    assert entry.name == "dback"


@pytest.mark.slow
def test_without_pytest_asyncio_the_fixture_says_what_to_install(tmp_path: Path):
    """dback-core installed without its ``testing`` extra: pytest still runs, and a test
    asking for ``dback`` fails with the command that fixes it."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "pytest_asyncio.py").write_text("raise ImportError('not installed')\n")
    (tmp_path / "test_author.py").write_text(
        "def test_needs_dback(dback):\n    pass\n\n\ndef test_other_tests_run():\n    pass\n"
    )
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*pytest, "-p", "no:asyncio", "test_author.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(hidden)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "1 passed, 1 error" in result.stdout, result.stdout + result.stderr
    assert "pip install 'dback-core[testing]'" in result.stdout
