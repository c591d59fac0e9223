"""Shared fixtures: real dback servers on ephemeral ports, and real WebSocket clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dback_core.testing import Client, running_server

__all__ = ["Client", "running_server"]


@pytest.fixture
async def mock_server(monkeypatch) -> AsyncIterator:
    """A server with only the installed mock plugin, fast and seeded."""
    monkeypatch.setenv("DBACK_PLUGINS", "dback-mock")
    monkeypatch.setenv("DBACK_MOCK_INTERVAL", "0.05")
    monkeypatch.setenv("DBACK_MOCK_SEED", "7")
    monkeypatch.setenv("DBACK_MOCK_PASSWORD", "sesame")
    async with running_server() as server:
        yield server
