"""Logs: JSON lines on request, plugin failures named, and never a password or token."""

from __future__ import annotations

import json
import logging
import os
import sys

import pytest

from dback_core import hookimpl
from dback_core.ops.logs import configure_logging
from dback_core.plugin.redaction import redact
from dback_core.testing import Client, running_server
from tests.support.json_log import serving

PASSWORD = "sesame-7f3a9c"
WRONG_PASSWORD = "guess-5b1e2d"
DISCORD_TOKEN = "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs"
DSN_PASSWORD = "hunter2-9d8c"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"cannot connect to postgresql://dback:{DSN_PASSWORD}@db:5432/dback", DSN_PASSWORD),
        (f"redis://:{DSN_PASSWORD}@cache:6379/0 refused", DSN_PASSWORD),
        (f"login failed: password={PASSWORD}", PASSWORD),
        (f'{{"password": "{PASSWORD}", "server": "oauth"}}', PASSWORD),
        (f"{{'discordToken': '{DISCORD_TOKEN}'}}", DISCORD_TOKEN),
        (f"Improper token has been passed: {DISCORD_TOKEN}", DISCORD_TOKEN),
        (f"DBACK_DISCORD_TOKEN={DISCORD_TOKEN}", DISCORD_TOKEN),
    ],
)
def test_secrets_are_redacted(text, secret):
    cleaned = redact(text)
    assert secret not in cleaned
    assert "***" in cleaned


def test_ordinary_text_is_left_alone():
    text = "serving 4 guilds on ws://127.0.0.1:3000; client 127.0.0.1 joined dworld"
    assert redact(text) == text


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


async def test_a_failing_plugin_is_named_in_json_lines_without_its_secret(capsys, restore_logging):
    class Broken:
        @hookimpl
        def get_user_data(self, server_id):
            raise ConnectionError(f"cannot reach postgresql://dback:{DSN_PASSWORD}@db/dback")

    class Provider:
        @hookimpl
        def get_server_data(self):
            return {"1": {"id": "one", "name": "One"}}

    configure_logging("INFO", "json")
    plugins = [("broken-db", Broken()), ("provider", Provider())]
    async with running_server(plugins, environ={"DBACK_PLUGINS": ""}) as server:
        async with Client(server) as client:
            await client.join("one")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    failures = [line for line in lines if line["message"].startswith("plugin broken-db:")]
    assert failures, lines
    assert failures[0]["level"] == "ERROR"
    assert "get_user_data" in failures[0]["message"]
    assert "ConnectionError" in failures[0]["exception"]
    assert DSN_PASSWORD not in json.dumps(lines)


def test_an_unknown_log_format_is_a_clear_error(restore_logging):
    with pytest.raises(ValueError, match="DBACK_LOG_FORMAT"):
        configure_logging("INFO", "xml")


async def test_dback_serve_logs_json_lines_and_never_credentials():
    """A real ``dback serve`` at DEBUG: every line JSON, no password or token anywhere."""
    environ = {
        **os.environ,
        "DBACK_PLUGINS": "dback-mock",
        "DBACK_MOCK_PASSWORD": PASSWORD,
        "DBACK_MOCK_INTERVAL": "0.05",
        "DBACK_LOG_FORMAT": "json",
        "DBACK_LOG_LEVEL": "DEBUG",
    }
    command = [sys.executable, "-m", "dback_core", "serve", "--port", "0"]
    async with serving(*command, env=environ, timeout=30) as dback:
        async with Client(f"ws://127.0.0.1:{dback.port}") as client:
            refused = await client.join("oauth", password=WRONG_PASSWORD)
            assert refused["type"] == "error"
            refused = await client.join("oauth", discordToken=DISCORD_TOKEN)
            assert refused["type"] == "error"
            admitted = await client.join("oauth", password=PASSWORD)
            assert admitted["type"] == "server-join"
            await client.recv_type("presence")
    text = "".join(dback.lines)
    lines = dback.records()
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    messages = [line["message"] for line in lines]
    assert any(message.startswith("plugins: dback-mock") for message in messages)
    assert any("connected" in message for message in messages)
    for secret in (PASSWORD, WRONG_PASSWORD, DISCORD_TOKEN):
        assert secret not in text
    assert dback.process.returncode == 0


def _formatted(log_format: str, message: str, *args, error: BaseException | None = None) -> str:
    configure_logging("INFO", log_format)
    formatter = logging.getLogger().handlers[0].formatter
    exc_info = None
    if error is not None:
        try:
            raise error
        except type(error):
            exc_info = sys.exc_info()
    record = logging.LogRecord("dback_core", logging.ERROR, __file__, 1, message, args, exc_info)
    return formatter.format(record)


def test_a_text_record_is_one_line_whatever_its_arguments_hold(restore_logging):
    line = _formatted("text", "guild %s: %s", "1\n2031-01-01 INFO x: fake", "\x1b[2J\u202eok\u2028")
    assert "\n" not in line
    assert line.endswith("guild 1\\n2031-01-01 INFO x: fake: \\x1b[2J\\u202eok\\u2028")


def test_a_traceback_keeps_its_lines_but_not_those_of_its_message(restore_logging):
    cause = KeyError("inner")
    error = ValueError("bad name\n2031-01-01 00:00:00,000 INFO dback_core: forged \x1b[31m")
    error.__cause__ = cause
    text = _formatted("text", "failed", error=error)
    lines = text.splitlines()
    assert lines[0].endswith("ERROR dback_core: failed")
    assert "The above exception was the direct cause of the following exception:" in lines
    assert "Traceback (most recent call last):" in lines
    assert any(line.startswith('  File "') for line in lines)
    assert lines[-1] == (
        "ValueError: bad name\\n2031-01-01 00:00:00,000 INFO dback_core: forged \\x1b[31m"
    )
    assert not any(line.startswith("2031") for line in lines)


def test_json_lines_encode_controls_line_and_bidi_characters(restore_logging):
    line = _formatted("json", "name %s", "a\nb\x1b\x85\u2028\u202ec", error=ValueError("x\ny"))
    assert "\n" not in line and "\x1b" not in line and "\u2028" not in line and "\x85" not in line
    entry = json.loads(line)
    assert entry["message"] == "name a\nb\x1b\x85\u2028\u202ec"
    assert entry["exception"].endswith("ValueError: x\ny")
