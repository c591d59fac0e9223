"""A bot without the Message Content intent serves presences without chat, and says why."""

from __future__ import annotations

import logging

from discord_fake import MEMBERS, MESSAGE_CONTENT, PRESENCES
from discord_world import ALICE, DAVE, GENERAL, LOUNGE, discord_dback
from test_discord_health import health, http_get, wait_for_status
from test_discord_session_starts import wait_until

from dback_core.plugin.health import FAILED, SERVING
from dback_core.testing import Client
from dback_discord.plugin import INTENTS_HELP


def chat_warnings(caplog) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "chat off" in record.getMessage()
    ]


async def test_refused_message_content_falls_back_to_presences_without_chat(
    fake, monkeypatch, tmp_path, caplog
):
    fake.allowed_intents = MEMBERS | PRESENCES
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        await wait_for_status(server, SERVING)
        _, plugins = await http_get(server, "/api/plugins")
        detail = server.plugins.find("dback-discord").detail
        async with Client(server) as client:
            join = await client.join(str(LOUNGE))
            await fake.say(LOUNGE, GENERAL, ALICE, "nobody reads this")
            await fake.set_status(LOUNGE, DAVE, "online")
            frame = await client.recv_type("presence", "message")
            # A new session (op 9) serves again without chat: still one warning.
            await fake.invalidate_sessions()
            await wait_until(lambda: fake.identifies == 2)
            await wait_for_status(server, SERVING)
            await fake.set_status(LOUNGE, DAVE, "idle")
            again = await client.recv_type("presence", "message")
    asked = [bool(intents & MESSAGE_CONTENT) for _, _, intents in fake.identify_log]
    assert asked == [True, False, False]
    assert join["data"]["users"][str(ALICE)]["status"] == "online"
    assert frame["type"] == "presence" and frame["data"]["uid"] == str(DAVE)
    assert again["type"] == "presence" and again["data"]["status"] == "idle"
    assert "chat off" in detail and "Message Content Intent" in detail and "4014" in detail
    assert "chat off" in plugins
    assert len(chat_warnings(caplog)) == 1


async def test_refused_members_or_presences_still_fail_with_the_portal_steps(
    fake, monkeypatch, tmp_path
):
    fake.allowed_intents = MESSAGE_CONTENT
    health_text = "failed_retry = 30\n"
    async with discord_dback(fake, monkeypatch, tmp_path, health_text) as server:
        await wait_for_status(server, FAILED)
        reason = health(server).reason
        async with Client(server) as client:
            listed = client.server_list
    asked = [bool(intents & MESSAGE_CONTENT) for _, _, intents in fake.identify_log]
    assert asked == [True, False]
    assert reason == INTENTS_HELP and listed == {}
    assert fake.identifies == 0
