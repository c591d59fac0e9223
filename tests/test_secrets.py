"""Secrets never leave the process: a PostgreSQL DSN, Redis URLs and a Discord token with
awkward passwords (a space, ``@``, ``:``, ``/``, ``%`` and non-ASCII), set on a real
``dback serve``, appear in none of its outputs - ``/api/plugins``, ``/metrics``, ``/readyz``,
the status page as chromium renders it, ``dback plugins`` and ``--json``, ``dback serve
--help`` - nor in any log line, while hosts, ports and databases stay readable; and the
passwords still reach PostgreSQL and Redis whole (the servers really check them).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest
from redis.asyncio import Redis

from dback_core.ops.cli import _setting_help
from dback_core.ops.logs import configure_logging
from dback_core.plugin.settings import Setting
from tests.support.outputs import Dback, environment, everything, leaks, run_dback
from tests.support.ports import free_port
from tests.support.postgres_passwords import ADMIN_DSN, dsn_as, password_required

ROOT = Path(__file__).resolve().parent.parent
DISCORD_TESTS = ROOT / "plugins" / "dback_discord" / "tests"


def awkward(tag: str) -> tuple[str, list[str]]:
    """A password holding a space, ``@``, ``:``, ``/``, ``%`` and non-ASCII, and the words
    it is made of: none of them may appear anywhere either (a secret cut at the wrong
    ``@`` would show its tail as a host)."""
    words = [f"{tag}{word}" for word in ("Kilo", "Lima", "Mike", "Oscar", "Papa")]
    return f"{words[0]} {words[1]}@{words[2]}:{words[3]}/{words[4]}%zzäß€", words


def assert_nothing_leaks(outputs: dict[str, str], secrets: list[str], words: list[str]) -> None:
    found = leaks(outputs, secrets, words)
    assert not found, "\n".join(found)


# -- PostgreSQL ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def role_with_password(password: str) -> AsyncIterator[tuple[str, str]]:
    """A new PostgreSQL role with ``password`` and a database it owns, asked for that
    password over TCP; both dropped afterwards."""
    role = f"dback_secret_{uuid.uuid4().hex[:10]}"
    database = f"{role}_db"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        literal = await admin.fetchval("SELECT quote_literal($1::text)", password)
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD {literal}")
        await admin.execute(f"CREATE DATABASE {database} OWNER {role}")
        async with password_required(admin, role):
            yield role, database
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.postgres
@pytest.mark.browser
@pytest.mark.slow
async def test_a_postgresql_password_with_awkward_characters(restore_logging):
    password, words = awkward("pg")
    wrong, wrong_words = awkward("bad")
    async with role_with_password(password) as (role, database):
        # As written, unencoded: the password ends at the last @ before the host.
        dsn = f"postgresql://{role}:{password}@127.0.0.1:5432/{database}"
        masked = f"postgresql://{role}:***@127.0.0.1:5432/{database}"
        env = environment(
            DBACK_PLUGINS="dback-postgres", DBACK_POSTGRES_DSN=dsn, DBACK_LOG_LEVEL="DEBUG"
        )
        outputs = {
            "dback postgres migrate": await asyncio.to_thread(run_dback, env, "postgres", "migrate")
        }
        assert (
            f"schema at postgresql://{role}@127.0.0.1:5432/{database}"
            in outputs["dback postgres migrate"]
        ), outputs
        guild = await asyncpg.connect(dsn_as("postgres", None, database))
        try:
            await guild.execute(
                "INSERT INTO servers (server_id, name, is_default) VALUES ('4242', 'Vault', true)"
            )
        finally:
            await guild.close()
        async with Dback(env) as dback:
            await dback.until_ready()  # PostgreSQL took the password: it reads the guild
            outputs |= await everything(dback)
            (dsn_setting,) = [
                s for s in (await dback.plugin("dback-postgres"))["settings"] if s["url"]
            ]
            assert dsn_setting["value"] == masked
        outputs["log"] = dback.log
        assert masked in outputs["dback plugins"]

        # Percent-encoded, and wrong: PostgreSQL refuses it; the reason names the fix.
        wrong_dsn = f"postgresql://{role}:{quote(wrong, safe='')}@127.0.0.1:5432/{database}"
        env = environment(
            DBACK_PLUGINS="dback-postgres",
            DBACK_POSTGRES_DSN=wrong_dsn,
            DBACK_LOG_LEVEL="DEBUG",
            DBACK_LOG_FORMAT="json",
        )
        async with Dback(env) as refused:
            entry = await refused.until_status("dback-postgres", "failed")
            assert "password authentication failed" in entry["error"]
            assert f"postgresql://{role}@127.0.0.1:5432/{database}" in entry["error"]
            wrong_outputs = await everything(refused)
        outputs |= {f"{where} (refused)": text for where, text in wrong_outputs.items()}
        outputs["log (refused, JSON)"] = refused.log
        outputs["dback postgres status (refused)"] = await asyncio.to_thread(
            run_dback, env, "postgres", "status"
        )
        assert "password authentication failed" in outputs["dback postgres status (refused)"]

        # A traceback of the refusal that quotes the DSN, as a careless plugin's might.
        outputs |= await _logged_refusal(role, database, wrong, wrong_dsn)
    assert_nothing_leaks(outputs, [password, wrong], words + wrong_words)


async def _logged_refusal(role: str, database: str, wrong: str, wrong_dsn: str) -> dict:
    """The text and JSON log lines of a real refusal's traceback quoting ``wrong_dsn``."""
    Setting("DBACK_SECRETS_TEST_DSN", url=True).parse({"DBACK_SECRETS_TEST_DSN": wrong_dsn})
    try:
        try:
            await asyncpg.connect(dsn_as(role, None, database), password=wrong)
        except asyncpg.InvalidPasswordError as refusal:
            raise ConnectionError(f"cannot log in to {wrong_dsn} as {wrong!r}") from refusal
    except ConnectionError:
        exc_info = sys.exc_info()
    written = {}
    for log_format in ("text", "json"):
        configure_logging("INFO", log_format)
        stream = io.StringIO()
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        logging.getLogger("dback_postgres").error(
            "database refused %s", wrong_dsn, exc_info=exc_info
        )
        written[f"traceback ({log_format})"] = stream.getvalue()
    assert "password authentication failed" in written["traceback (text)"], written
    assert "InvalidPasswordError" in written["traceback (json)"]
    return written


# -- Redis -----------------------------------------------------------------------------------


@contextlib.contextmanager
def private_redis(password: str, socket: Path) -> Iterator[int]:
    """A redis-server of this test's own that requires ``password``, on a TCP port and on
    the Unix socket ``socket``."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is required: apt-get install -y redis-server"
    port = free_port()
    arguments = ["--bind", "127.0.0.1", "--port", str(port), "--unixsocket", str(socket)]
    arguments += ["--save", "", "--appendonly", "no", "--requirepass", password]
    process = subprocess.Popen([binary, *arguments], stdout=subprocess.DEVNULL)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


async def _clients_named_dback(port: int, password: str) -> list[str]:
    """The CLIENT SETNAMEs of dback's connections to the private Redis (which checks the
    password, so a name here means dback's password was taken)."""
    redis = Redis(host="127.0.0.1", port=port, password=password, decode_responses=True)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError, ConnectionError, Exception):
                clients = await redis.client_list()
                names = [c["name"] for c in clients if c["name"].startswith("dback:")]
                if names:
                    return names
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    return []


@pytest.mark.redis
@pytest.mark.browser
@pytest.mark.slow
async def test_redis_urls_with_an_awkward_password(tmp_path):
    password, words = awkward("rd")
    socket = tmp_path / "redis.sock"
    outputs: dict[str, str] = {}
    with private_redis(password, socket) as port:
        cases = {
            "redis://": (
                f"redis://:{password}@127.0.0.1:{port}/0",
                f"redis://:***@127.0.0.1:{port}/0",
            ),
            "unix://": (
                f"unix://{socket}?db=0&password={quote(password, safe='')}",
                f"unix://{socket}?db=0&password=***",
            ),
        }
        for name, (url, masked) in cases.items():
            env = environment(
                DBACK_PLUGINS="dback-redis,dback-mock",
                DBACK_REDIS_URL=url,
                DBACK_MOCK_INTERVAL="0.2",
                DBACK_LOG_LEVEL="DEBUG",
            )
            async with Dback(env) as dback:
                await dback.until_ready()
                assert await _clients_named_dback(port, password), dback.log
                outputs |= {
                    f"{where} ({name})": text for where, text in (await everything(dback)).items()
                }
                entry = await dback.plugin("dback-redis")
                (url_setting,) = [
                    s for s in entry["settings"] if s["variable"] == "DBACK_REDIS_URL"
                ]
                assert url_setting["value"] == masked
                assert masked in entry["detail"]
            outputs[f"log ({name})"] = dback.log

        # TLS against a server without it: never connects; the masking is the point.
        tls = f"rediss://dback:{password}@127.0.0.1:{port}/0"
        env = environment(
            DBACK_PLUGINS="dback-redis,dback-mock",
            DBACK_REDIS_URL=tls,
            DBACK_LOG_LEVEL="DEBUG",
        )
        async with Dback(env) as dback:
            entry = await dback.until_status("dback-redis", "unavailable")
            assert f"rediss://dback:***@127.0.0.1:{port}/0" in json.dumps(entry)
            outputs |= {
                f"{where} (rediss://)": text for where, text in (await everything(dback)).items()
            }
        outputs["log (rediss://)"] = dback.log
    assert_nothing_leaks(outputs, [password], words)


# -- Discord ---------------------------------------------------------------------------------


@contextlib.contextmanager
def fake_discord() -> Iterator[int]:
    """A fake Discord in its own process (the plugin's test double); its port."""
    process = subprocess.Popen(
        [sys.executable, str(DISCORD_TESTS / "discord_fake_process.py"), "3"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


@pytest.mark.browser
@pytest.mark.slow
async def test_a_discord_token_that_discord_refuses():
    token, words = awkward("dc")
    with fake_discord() as port:
        env = environment(
            DBACK_PLUGINS="dback-discord", DBACK_DISCORD_TOKEN=token, DBACK_LOG_LEVEL="DEBUG"
        )
        command = [sys.executable, str(DISCORD_TESTS / "serve_against_fake.py"), str(port), "serve"]
        async with Dback(env, command) as dback:
            entry = await dback.until_status("dback-discord", "failed")
            (token_setting,) = [s for s in entry["settings"] if s["secret"]]
            assert token_setting["value"] == "***"
            outputs = await everything(dback)
        outputs["log"] = dback.log
    assert_nothing_leaks(outputs, [token], words)


# -- the help -------------------------------------------------------------------------------


def test_serve_help_masks_secret_defaults():
    secret = Setting("DBACK_T_TOKEN", str, "default-token-123", "a token", secret=True)
    url = Setting("DBACK_T_URL", str, "redis://:default-pass-456@cache:6379/0", "a url", url=True)
    assert "default-token-123" not in _setting_help(secret)
    assert "default: ***" in _setting_help(secret)
    assert "default-pass-456" not in _setting_help(url)
    assert "default: redis://:***@cache:6379/0" in _setting_help(url)
    described = url.describe({})
    assert described["default"] == described["shown_default"] == "redis://:***@cache:6379/0"
