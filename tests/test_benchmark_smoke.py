"""The benchmark still runs: a tiny dback-only pass over every scenario, no timing asserted.

The full comparison (``make bench``) installs d-back from the package index and takes
minutes; here the same code drives dback over real sockets at toy sizes, and the test checks
that every scenario produced a complete result, not how fast it was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_scenario_of_the_benchmark_runs_and_reports(tmp_path):
    out = tmp_path / "smoke.json"
    finished = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--smoke",
            "--servers",
            "dback,dback-none",
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
    assert set(runs) == {"broadcast@30", "storm", "joins", "slow@without", "slow@with"}
    for scenario in ("broadcast@30", "slow@without", "slow@with"):
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
