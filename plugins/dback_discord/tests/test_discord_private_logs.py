"""With DEBUG logging on, no log line holds message text, a token or a member list."""

from __future__ import annotations

import logging

from discord_world import ALICE, CAROL, GENERAL, LOUNGE, RANDOM, discord_dback

from dback_core.testing import Client

CONFIG = f"""
[guilds.{LOUNGE}]
discord_login = true
ignore_channels = [{RANDOM}]
"""


async def test_debug_logs_hold_no_chat_tokens_or_members(fake, monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    fake.oauth_users = {"viewer-oauth-token-1": [LOUNGE]}
    fake.add_member(LOUNGE, 1099, "quinn-private-name", nick="Quinn Nick", status="online")
    async with discord_dback(fake, monkeypatch, tmp_path, CONFIG) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE), discordToken="viewer-oauth-token-1")
            await fake.say(LOUNGE, RANDOM, ALICE, "whispered in an ignored channel")
            await fake.say(LOUNGE, GENERAL, ALICE, "said out loud")
            await fake.set_status(LOUNGE, CAROL, "online")
            await client.recv_type("message")
            await client.recv_type("presence")
    # Every record from the server side; the test's own client logs what it received.
    lines = [
        record.getMessage() + (record.exc_text or "")
        for record in caplog.records
        if record.name != "websockets.client"
    ]
    assert lines and any(record.levelno == logging.DEBUG for record in caplog.records)
    secrets = [
        "whispered in an ignored channel",
        "said out loud",
        fake.token,
        "viewer-oauth-token-1",
        "quinn-private-name",  # member lists and presences are not logged
        "Quinn Nick",
    ]
    for line in lines:
        for secret in secrets:
            assert secret not in line, f"{secret!r} logged: {line[:200]}"
