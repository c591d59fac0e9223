"""The Discord world the plugin's tests run against, and a dback server pointed at it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from discord_fake import FakeDiscord

from dback_core.serving.server import DbackServer
from dback_core.testing import running_server

LOUNGE, WORKSHOP = 111111111111111111, 222222222222222222
MOD, ADMIN = 301, 302
BLUE, RED = 0x3498DB, 0xE74C3C
GENERAL, RANDOM = 501, 502
ALICE, BOB, CAROL, DAVE, ROBOT, ERIN = 1001, 1002, 1003, 1004, 1005, 1006
BOT = 4242

#: Settings every test needs against the fake: no 2 s wait for guilds, no 5 s identify pause.
FAST_BOT = "[bot]\nguild_ready_timeout = 0.05\nreidentify_delay = 0\n"


def build_world() -> FakeDiscord:
    fake = FakeDiscord(bot_id=BOT)
    fake.add_guild(LOUNGE, "Lounge")
    fake.add_role(LOUNGE, MOD, "Mod", color=BLUE, position=1)
    fake.add_role(LOUNGE, ADMIN, "Admin", color=RED, position=2)
    fake.add_channel(LOUNGE, GENERAL, "general")
    fake.add_channel(LOUNGE, RANDOM, "random")
    fake.add_member(LOUNGE, ALICE, "alice", nick="Alice", roles=[MOD, ADMIN], status="online")
    fake.add_member(LOUNGE, BOB, "bob", roles=[MOD], status="idle")
    fake.add_member(LOUNGE, CAROL, "carol", status="dnd")
    fake.add_member(LOUNGE, DAVE, "dave")
    fake.add_member(LOUNGE, ROBOT, "robot", bot=True, status="online")
    fake.add_guild(WORKSHOP, "Workshop")
    fake.add_channel(WORKSHOP, GENERAL + 100, "general")
    fake.add_member(WORKSHOP, ALICE, "alice", status="online")
    fake.add_member(WORKSHOP, ERIN, "erin", status="online")
    return fake


@contextlib.asynccontextmanager
async def discord_dback(
    fake: FakeDiscord,
    monkeypatch,
    tmp_path: Path,
    config: str = "",
    token: str | None = None,
    prelude: str = FAST_BOT,
    **settings: Any,
) -> AsyncIterator[DbackServer]:
    """A dback with only the installed Discord plugin, logged in to ``fake``.

    ``token`` replaces the bot token the fake accepts, to test a refused login; ``prelude``
    starts the file instead of ``FAST_BOT`` (its ``[bot]`` table continues in ``config``);
    ``settings`` are the core's (``Settings`` fields).
    """
    path = tmp_path / "discord.toml"
    path.write_text(prelude + config)
    monkeypatch.setenv("DBACK_DISCORD_TOKEN", token or fake.token)
    monkeypatch.setenv("DBACK_DISCORD_CONFIG", str(path))
    environ = {"DBACK_PLUGINS": "dback-discord", "DBACK_STRICT_PLUGINS": "1"}
    async with running_server(environ=environ, **settings) as server:
        yield server


def key_of(server_list: dict, name: str) -> str:
    """The server-list key of the guild shown as ``name``."""
    return next(key for key, entry in server_list.items() if entry["name"] == name)
