"""The README's two commands: ``make serve`` installs no test tools; ``make test`` prepares the
machine itself, and CI runs nothing but it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Variables a ``make test`` around these tests passes down; the plans must not depend on them.
OUTER_MAKE = {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}


def planned(target: str) -> str:
    """What ``make`` would run for ``target`` from scratch (dry run, every target out of date)."""
    result = subprocess.run(
        # Not "Entering directory" lines when the tests themselves run under ``make test``.
        ["make", "--no-print-directory", "--dry-run", "--always-make", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**{k: v for k, v in os.environ.items() if k not in OUTER_MAKE}, "PYTHON": "python3"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_serve_installs_no_test_tools():
    plan = planned("serve")
    assert "pip install --quiet -e . " in plan
    assert "[test]" not in plan
    assert "scripts/test-machine" not in plan
    assert plan.rstrip().endswith("dback serve")


def test_make_test_prepares_the_machine_before_running_the_tests():
    lines = planned("test").splitlines()
    assert "[test]" in "\n".join(lines)
    machine = lines.index("scripts/test-machine")
    pytest_line = next(i for i, line in enumerate(lines) if "-m pytest" in line)
    assert machine < pytest_line


def test_ci_runs_only_the_readme_test_command():
    commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', "make test"]


@pytest.mark.system
@pytest.mark.postgres
@pytest.mark.redis
def test_the_machine_script_leaves_a_prepared_machine_as_it_is():
    """Everything is installed and running here: the script changes nothing and says nothing,
    and afterwards PostgreSQL and Redis answer."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "test-machine")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]).returncode == 0
    ping = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"], capture_output=True
    )
    assert ping.stdout.strip() == b"PONG"
