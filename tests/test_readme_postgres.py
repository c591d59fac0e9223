"""README's "PostgreSQL: a role once, then three commands to a world", run as written by bash
with real PostgreSQL, real ``dback`` commands, ``psql`` and a WebSocket client.

Three substitutions keep the test beside anything else on the machine's PostgreSQL: the role
and the database get names of their own (dropped afterwards), and ``sudo -u postgres psql``
becomes ``psql`` as ``postgres`` over 127.0.0.1 (the test machine trusts it; a fresh Debian
install reaches ``postgres`` through sudo instead).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dback_core.testing import Client
from tests.support.json_log import serving

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]


def readme_block() -> str:
    section = README.split("PostgreSQL: a role once, then three commands to a world", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def names():
    suffix = uuid.uuid4().hex[:10]
    role, database = f"dback_readme_{suffix}", f"dback_readme_{suffix}"
    yield role, database
    subprocess.run([*ADMIN, "-c", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'])
    subprocess.run([*ADMIN, "-c", f'DROP ROLE IF EXISTS "{role}"'])


async def test_the_readme_postgres_steps_end_in_a_world(names):
    role, database = names
    block = readme_block()
    lines = [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    assert lines[-1] == "dback serve"
    assert "sudo -u postgres psql" in lines[0]
    script = "\n".join(lines[:-1])
    script = script.replace("sudo -u postgres psql", " ".join(ADMIN))
    script = re.sub(r"\bROLE dback\b", f"ROLE {role}", script)
    script = script.replace("postgresql://dback:", f"postgresql://{role}:")
    script = script.replace("5432/dback\n", f"5432/{database}\n")
    assert role in script and database in script.split("5432/", 1)[1]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DBACK_")}
    environ["PATH"] = f"{Path(sys.executable).parent}:{environ['PATH']}"
    done = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{script}\nenv | grep ^DBACK_POSTGRES_DSN="],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    dsn = done.stdout.strip().splitlines()[-1].split("=", 1)[1]
    async with serving(
        str(Path(sys.executable).parent / "dback"),
        "serve",
        "--port",
        "0",
        env={**environ, "DBACK_POSTGRES_DSN": dsn, "DBACK_LOG_FORMAT": "json"},
    ) as served:
        async with Client(f"ws://127.0.0.1:{served.port}", timeout=30) as client:
            assert list(client.server_list) == ["232769614004748288"]
            assert client.server_list["232769614004748288"]["name"] == "D-Base"
            world = await client.join("232769614004748288")  # the id ?s= gives
            users = world["data"]["users"]
            assert [user["username"] for user in users.values()] == ["Ada"]
    warnings = [r["message"] for r in served.records() if r["level"] == "WARNING"]
    assert not any("serving 0 guilds" in message for message in warnings), warnings
