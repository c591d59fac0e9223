"""A fresh virtual environment with packages of this repository, as a user would have it.

The packaging, third-party plugin and ``dback new-plugin`` tests install dback into a new
venv and run its ``dback`` command there; they share how the sources are copied (clean, so
no earlier build output is packed), how the venv is made, the environment its commands run
in, and how an installed ``dback serve`` is started and stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from tests.support import json_log
from tests.support.json_log import Served

ROOT = Path(__file__).resolve().parents[2]
#: What a copy of a package's sources leaves out: caches and earlier build output.
CLEAN = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", ".*")
#: The top-level files and folders that make up the dback-core package.
CORE_PARTS = ("pyproject.toml", "README.md", "LICENSE", "dback_core")


def copy_core(destination: Path) -> Path:
    """A clean copy of dback-core's sources in ``destination``."""
    destination.mkdir(parents=True)
    for part in CORE_PARTS:
        if (ROOT / part).is_dir():
            shutil.copytree(ROOT / part, destination / part, ignore=CLEAN)
        else:
            shutil.copy(ROOT / part, destination / part)
    return destination


def copy_mock(destination: Path) -> Path:
    """A clean copy of the embedded mock's sources in ``destination``."""
    shutil.copytree(ROOT / "plugins" / "dback_mock", destination, ignore=CLEAN)
    return destination


def create(venv: Path) -> list[str]:
    """Make a new venv; the command line of its pip."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    return [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]


def environment(venv: Path, **extra: str) -> dict[str, str]:
    """The venv's PATH, none of this test run's dback settings, and ``extra``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DBACK_", "PYTHON"))}
    environ["PATH"] = f"{venv / 'bin'}{os.pathsep}{environ.get('PATH', '')}"
    environ["VIRTUAL_ENV"] = str(venv)
    return {**environ, **extra}


def serving(venv: Path, environ: dict[str, str]) -> AbstractAsyncContextManager[Served]:
    """The venv's ``dback serve`` on a free port (see ``json_log.serving``)."""
    command = [str(venv / "bin" / "dback"), "serve", "--port", "0", "--log-format", "json"]
    return json_log.serving(*command, env=environ)


def described(venv: Path, environ: dict[str, str]) -> dict[str, Any]:
    """What the venv's ``dback plugins --json`` says."""
    listed = subprocess.run(
        [str(venv / "bin" / "dback"), "plugins", "--json"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(listed.stdout)
