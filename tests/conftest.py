"""Shared fixtures: real dback servers on ephemeral ports, and real WebSocket clients."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from importlib.metadata import entry_points

import pytest

from dback_core.loading.plugins import ENTRY_POINT_GROUP, normalize_name
from dback_core.testing import Client, running_server

__all__ = ["Client", "running_server"]


@pytest.fixture(autouse=True)
def only_the_mock_by_default(monkeypatch):
    """Core tests see the mock as the only installed plugin, whatever else is installed.

    Other plugins are disabled rather than the mock being listed, so the mock keeps its
    embedded-default behaviour (stepping aside for registered callbacks).
    """
    others = {
        normalize_name(entry_point.name)
        for entry_point in entry_points(group=ENTRY_POINT_GROUP)
        if normalize_name(entry_point.name) != "dback-mock"
    }
    monkeypatch.delenv("DBACK_PLUGINS", raising=False)
    monkeypatch.setenv("DBACK_DISABLE_PLUGINS", ",".join(sorted(others)))


@pytest.fixture
async def mock_server(monkeypatch) -> AsyncIterator:
    """A server with only the installed mock plugin, fast and seeded."""
    monkeypatch.setenv("DBACK_PLUGINS", "dback-mock")
    monkeypatch.setenv("DBACK_MOCK_INTERVAL", "0.05")
    monkeypatch.setenv("DBACK_MOCK_SEED", "7")
    monkeypatch.setenv("DBACK_MOCK_PASSWORD", "sesame")
    async with running_server() as server:
        yield server


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on ``sys.path`` to install test plugins into (``install_plugin``); the
    modules imported from it are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in [name for name in sys.modules if name.startswith("tp_")]:
        del sys.modules[module]
