"""``dback serve --workers N`` runs only when an active plugin shares one world between the
workers: the core asks the ``worker_sharing`` hook and names no plugin itself."""

from __future__ import annotations

import os
import subprocess
import sys

from dback_core import hookimpl
from dback_core.loading.hooks import PluginHooks
from dback_core.loading.plugins import load_plugins
from dback_core.ops.workers import scaling_problem


class Bus:
    """Shares the world when its settings allow it, and says what they lack otherwise."""

    def __init__(self, answer: bool | str | None):
        self.answer = answer

    @hookimpl
    async def worker_sharing(self):
        return self.answer


async def _asked(*answers: bool | str | None) -> tuple[str | None, bool | str]:
    plugins = load_plugins(
        environ={"DBACK_PLUGINS": ""},
        in_process=[(f"bus-{n}", Bus(answer)) for n, answer in enumerate(answers)],
    )
    return await PluginHooks(plugins).worker_sharing()


async def test_a_plugin_that_shares_the_world_lets_the_workers_start():
    plugin, sharing = await _asked(None, True)
    assert (plugin, sharing) == ("bus-1", True)
    assert scaling_problem(3000, plugin, sharing) is None
    assert "fixed --port" in (scaling_problem(0, plugin, sharing) or "")


async def test_a_plugin_whose_settings_do_not_allow_it_says_what_they_lack():
    plugin, sharing = await _asked("DBACK_BUS_ROLE=auto, not 'edge'")
    assert scaling_problem(3000, plugin, sharing) == (
        "--workers: plugin bus-0 shares the world between workers but needs "
        "DBACK_BUS_ROLE=auto, not 'edge'"
    )


async def test_without_an_answer_no_plugin_shares_the_world():
    plugin, sharing = await _asked(None, False)
    assert (plugin, sharing) == (None, False)
    assert "no active plugin shares the world between workers" in (
        scaling_problem(3000, plugin, sharing) or ""
    )


def test_serve_with_workers_and_only_the_mock_refuses_naming_what_is_missing():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBACK_")}
    result = subprocess.run(
        [sys.executable, "-m", "dback_core", "serve", "--workers", "2", "--port", "0"],
        env={**env, "DBACK_PLUGINS": "dback-mock"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no active plugin shares the world between workers" in result.stderr
    assert "redis" not in result.stderr.lower()
