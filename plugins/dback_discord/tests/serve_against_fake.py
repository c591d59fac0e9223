"""The real ``dback`` command line with discord.py pointed at a fake Discord on this host:
``python serve_against_fake.py PORT serve --port 0`` is ``dback serve --port 0`` whose bot
talks to the fake listening on ``PORT`` (``discord_fake.FakeDiscord``), never to Discord."""

from __future__ import annotations

import sys

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from dback_core.ops.cli import main

if __name__ == "__main__":
    port = int(sys.argv[1])
    Route.BASE = f"http://127.0.0.1:{port}/api/v10"
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{port}/gateway")
    sys.argv = ["dback", *sys.argv[2:]]
    main()
