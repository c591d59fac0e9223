"""A fresh virtual environment with packages of this repository, as a user would have it.

The packaging, third-party plugin and ``dback new-plugin`` tests install dback into a new
venv and run its ``dback`` command there; they share how the sources are copied (clean, so
no earlier build output is packed), how the venv is made, the environment its commands run
in, and how an installed ``dback serve`` is started and stopped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.json_log import serving_port

ROOT = Path(__file__).resolve().parent.parent
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


@asynccontextmanager
async def serving(
    venv: Path, environ: dict[str, str]
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """The venv's ``dback serve`` on a free port: (process, port); stopped with SIGTERM on
    leaving, after which ``process.returncode`` tells how it ended."""
    process = await asyncio.create_subprocess_exec(
        str(venv / "bin" / "dback"),
        "serve",
        "--port",
        "0",
        "--log-format",
        "json",
        env=environ,
        stderr=asyncio.subprocess.PIPE,
    )
    seen: list[str] = []
    try:
        assert process.stderr is not None
        yield process, await serving_port(process.stderr, seen)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 30)
