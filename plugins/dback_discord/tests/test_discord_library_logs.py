"""discord.py's warnings that voice is not supported are not shown on every start of the real
``dback serve`` (dback never joins a voice channel); its other warnings are."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import re
import sys
from pathlib import Path

from discord_world import FAST_BOT, build_world

from dback_discord.library_logs import quiet_discord_logs

HERE = Path(__file__).parent
#: discord.py warns about each voice library it cannot import: name shown, module.
VOICE_LIBRARIES = {"PyNaCl": "nacl", "davey": "davey"}


async def test_dback_serve_logs_no_voice_warning(tmp_path):
    missing = [
        name for name, module in VOICE_LIBRARIES.items() if importlib.util.find_spec(module) is None
    ]
    fake = build_world()
    await fake.start()
    config = tmp_path / "discord.toml"
    config.write_text(FAST_BOT)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DBACK_PLUGINS": "dback-discord",
        "DBACK_DISCORD_TOKEN": fake.token,
        "DBACK_DISCORD_CONFIG": str(config),
        "DBACK_LOG_LEVEL": "DEBUG",
    }
    serve = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "serve_against_fake.py"),
        str(fake.port),
        "serve",
        "--port",
        "0",
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    lines: list[str] = []
    try:
        assert serve.stderr is not None
        while line := (await asyncio.wait_for(serve.stderr.readline(), 60)).decode():
            lines.append(line)
            if re.search(r"serving \d+ guilds on ws://", line):
                break
    finally:
        serve.terminate()
        rest, _ = await asyncio.wait_for(serve.communicate(), 30)
        await fake.stop()
    log = "".join(lines) + (rest or b"").decode()
    assert "serving 2 guilds on ws://" in log, log  # the bot logged in to the fake
    assert not [line for line in log.splitlines() if "voice will NOT" in line and "WARNING" in line]
    for name in missing:
        assert (
            f"DEBUG dback_discord.library_logs: discord.py: {name} is not installed, voice will "
            "NOT be supported (dback uses no voice)"
        ) in log, log


def test_other_discord_py_warnings_are_kept(caplog):
    quiet_discord_logs()
    quiet_discord_logs()  # once per process, whatever the number of bots
    client = logging.getLogger("discord.client")
    assert len(client.filters) == 1
    client.warning("PyNaCl is not installed, voice will NOT be supported")
    client.warning("Shard ID %s has stopped responding to the gateway.", 0)
    assert [
        record.getMessage() for record in caplog.records if record.name == "discord.client"
    ] == ["Shard ID 0 has stopped responding to the gateway."]
