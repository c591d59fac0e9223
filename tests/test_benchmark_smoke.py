"""The benchmark still runs: a tiny dback-only pass over every scenario, no timing asserted.

The full comparison (``make bench``) installs d-back from the package index and takes
minutes; here the same code drives dback over real sockets at toy sizes, and the test checks
that every scenario produced a complete result, not how fast it was. The workers scenario
runs two dback processes on one port sharing a world through the real Redis at 6379.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent


def test_every_scenario_of_the_benchmark_runs_and_reports(tmp_path):
    out = tmp_path / "smoke.json"
    finished = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--smoke",
            "--servers",
            "dback,dback-none,dback-uvloop,dback-orjson",
            "--cache",
            str(tmp_path),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads(out.read_text())
    runs = report["runs"]["dback"]
    assert set(runs) == {
        "broadcast@30",
        "storm",
        "joins",
        "slow@without",
        "slow@with",
        "workers@1",
        "workers@2",
    }
    for scenario in ("broadcast@30", "slow@without", "slow@with", "workers@1", "workers@2"):
        (numbers,) = runs[scenario]
        assert numbers["delivered"] == 1.0, (scenario, numbers)
        assert numbers["p99_ms"] > 0
    assert runs["storm"][0]["joined"] == 1.0
    assert runs["joins"][0]["joins_per_s"] > 0
    plain = report["runs"]["dback-none"]
    # Every drain offers deflate: by default dback compresses, with ``none`` it does not.
    assert (
        runs["broadcast@30"][0]["bytes_per_delivery"]
        < plain["broadcast@30"][0]["bytes_per_delivery"]
    )
    assert runs["joins"][0]["bytes_per_join"] < plain["joins"][0]["bytes_per_join"]
    assert any(row.startswith("| joins | bytes on the wire per join |") for row in report["table"])
    assert any(row.startswith("| joins |") for row in report["table"])
    assert "--smoke" in report["command"]
    # The variants measuring the optional packages ran every scenario but the workers one
    # (dback only) and sent the same bytes as dback.
    for variant in ("dback-uvloop", "dback-orjson"):
        measured = report["runs"][variant]
        assert set(measured) == set(runs) - {"workers@1", "workers@2"}, variant
        assert measured["broadcast@30"][0]["delivered"] == 1.0
        assert measured["joins"][0]["bytes_per_join"] == runs["joins"][0]["bytes_per_join"]
    # Two workers on the real Redis: every viewer, on either worker, got every broadcast
    # (checked above); the CPU of both workers and of redis-server is counted.
    (two,) = runs["workers@2"]
    assert two["cpu_us_per_delivery"] >= 0 and two["redis_cpu_us_per_delivery"] >= 0
    assert two["busiest_worker_share"] < 1, "the kernel spread the viewers over both workers"
    assert "redis_cpu_us_per_delivery" not in runs["workers@1"][0]
    assert any(row.startswith("| workers' CPU per delivery (us) |") for row in report["table"])


def test_the_hung_worker_benchmark_runs_and_reports(tmp_path):
    """A short window with a 1 s timeout: the stopped worker is killed and the attempts after
    the kill are counted; no share of failures is asserted."""
    out = tmp_path / "hung.json"
    options = ["--window", "6", "--timeout", "1", "--rate", "10", "--json", str(out)]
    finished = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "hung_worker.py"), *options],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    run = json.loads(out.read_text())
    assert len(run["attempts"]) == 60
    assert run["killed_after"] is not None
    assert "| after the kill |" in finished.stdout
