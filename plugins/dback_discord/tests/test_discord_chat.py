"""Chat as people wrote it (names, emoji, spoilers, attachments, stickers, a length cap), only
where allowed, held for ``chat_delay``, and only from members on the map."""

from __future__ import annotations

import asyncio
import logging

import pytest
from discord_fake import VIEW_CHANNEL
from discord_world import ALICE, DAVE, GENERAL, LOUNGE, RANDOM, discord_dback

from dback_core.testing import Client
from dback_discord import delay
from dback_discord.chat import MAX_LENGTH

ARCHIVED_THREAD = 509
SENTINEL = "the end"


async def heard(fake, monkeypatch, tmp_path, config: str, said: list[tuple[int, str, dict]]):
    """What a viewer of the Lounge hears of ``said`` (channel, text, extras), in order; a
    sentinel in #general closes the list."""
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            for channel, text, extra in said:
                await fake.say(LOUNGE, channel, ALICE, text, **extra)
            await fake.say(LOUNGE, GENERAL, ALICE, SENTINEL)
            messages = []
            while not messages or messages[-1] != SENTINEL:
                messages.append((await client.recv_type("message"))["data"]["message"])
    return messages[:-1]


async def test_mentions_roles_channels_and_custom_emoji_are_shown_as_names(
    fake, monkeypatch, tmp_path
):
    # Real snowflakes: mentions are 15 to 20 digits.
    zed, helpers, help_channel = 123456789012345601, 123456789012345602, 123456789012345603
    fake.add_member(LOUNGE, zed, "zed", nick="Zed", status="online")
    fake.add_role(LOUNGE, helpers, "Helpers", color=0, position=3)
    fake.add_channel(LOUNGE, help_channel, "help")
    text = (
        f"hi <@{zed}> and <@!{zed}>, <@&{helpers}> see <#{help_channel}>"
        " <:party_parrot:12> <a:spin:99>"
    )
    said = [(GENERAL, text, {}), (GENERAL, "@everyone look", {})]
    messages = await heard(fake, monkeypatch, tmp_path, "", said)
    assert messages[0] == "hi @Zed and @Zed, @Helpers see #help :party_parrot: :spin:"
    assert messages[1] != "@everyone look" and "everyone look" in messages[1]


async def test_attachments_alone_get_a_placeholder_and_long_text_is_cut(
    fake, monkeypatch, tmp_path
):
    said = [
        (GENERAL, "", {"attachments": ["cat.png"]}),
        (GENERAL, "x" * 2000, {}),
        (GENERAL, "", {}),
    ]
    messages = await heard(fake, monkeypatch, tmp_path, "", said)
    assert messages == ["[attachment]", "x" * (MAX_LENGTH - 1) + "…"]


async def test_a_channel_that_cannot_be_resolved_is_not_relayed(fake, monkeypatch, tmp_path):
    """An archived thread the bot never saw: its parent is unknown, so neither who can read
    it nor any filter can be checked; the message is dropped, with or without filters."""
    said = [(ARCHIVED_THREAD, "from an archived thread", {})]
    ignoring = f"[guilds.{LOUNGE}]\nignore_channels = [{RANDOM}]\n"
    assert await heard(fake, monkeypatch, tmp_path, ignoring, said) == []
    assert await heard(fake, monkeypatch, tmp_path, "", said) == []


async def test_channels_can_be_filtered_by_name(fake, monkeypatch, tmp_path):
    fake.add_thread(LOUNGE, 503, RANDOM, "a thread")
    config = f'[guilds.{LOUNGE}]\nignore_channels = ["#Random"]\n'
    said = [(RANDOM, "off topic", {}), (503, "in a thread of random", {}), (GENERAL, "ok", {})]
    assert await heard(fake, monkeypatch, tmp_path, config, said) == ["ok"]


async def test_spoilers_are_never_shown_and_stickers_get_a_placeholder(fake, monkeypatch, tmp_path):
    said = [
        (GENERAL, "the killer is ||the butler|| and ||the\nmaid||", {}),
        (GENERAL, "||whole message||", {}),
        (GENERAL, r"plain \|\|bars\|\| and an open || pipe", {}),
        (GENERAL, "", {"stickers": ["Wave"]}),
        (GENERAL, "with text", {"stickers": ["Wave"]}),
        (GENERAL, "", {"stickers": ["Wave"], "attachments": ["cat.png"]}),
    ]
    messages = await heard(fake, monkeypatch, tmp_path, "", said)
    assert messages == [
        "the killer is [spoiler] and [spoiler]",
        "[spoiler]",
        r"plain \|\|bars\|\| and an open || pipe",
        "[sticker: Wave]",
        "with text",
        "[sticker: Wave]",
    ]
    assert not any("butler" in text or "maid" in text for text in messages)


async def held(server, count: int) -> None:
    """Wait until ``count`` messages wait out ``chat_delay`` in the running bot."""
    client = server.plugins.find("dback-discord").plugin.client

    async def reached() -> None:
        while len(client.held) != count:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(reached(), 10)


@pytest.mark.slow
async def test_chat_delay_lets_a_delete_cancel_the_bubble(fake, monkeypatch, tmp_path):
    """A message deleted (alone or in a purge) within ``chat_delay`` never reaches the
    viewer; one left alone arrives after the delay; one whose channel is locked meanwhile
    does not arrive either."""
    delay = 0.5
    config = f"[guilds.{LOUNGE}]\nchat_delay = {delay}\n"
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            loop = asyncio.get_running_loop()
            await fake.say(LOUNGE, RANDOM, ALICE, "then the channel was locked")
            await held(server, 1)  # waiting: the lock must stop it at the end of the delay
            await fake.set_overwrites(LOUNGE, RANDOM, {LOUNGE: (0, VIEW_CHANNEL)})
            spam = await fake.say(LOUNGE, GENERAL, ALICE, "spam, deleted by a bot")
            await fake.delete_message(LOUNGE, GENERAL, spam)
            purged = [await fake.say(LOUNGE, GENERAL, ALICE, f"purged {n}") for n in range(2)]
            await fake.delete_messages(LOUNGE, GENERAL, purged)
            said_at = loop.time()
            await fake.say(LOUNGE, GENERAL, ALICE, "kept")
            await fake.say(LOUNGE, GENERAL, ALICE, SENTINEL)
            first = await client.recv_type("message")
            arrived_after = loop.time() - said_at
            second = await client.recv_type("message")
    assert [first["data"]["message"], second["data"]["message"]] == ["kept", SENTINEL]
    # Held for the delay (call_later may fire a clock tick early).
    assert arrived_after >= delay - 0.01


async def test_chat_from_a_member_on_no_map_is_counted_not_sent(fake, monkeypatch, tmp_path):
    """Dave is offline in a guild that hides offline members (he may be invisible): he has
    no character, so the client would ignore his bubble; it is dropped and counted."""
    config = f"[guilds.{LOUNGE}]\nhide_offline = true\n"
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        async with Client(server) as client:
            join = await client.join(str(LOUNGE))
            await fake.say(LOUNGE, GENERAL, DAVE, "nobody can see me")
            await fake.say(LOUNGE, GENERAL, ALICE, SENTINEL)
            message = await client.recv_type("message")
            detail = server.plugins.find("dback-discord").detail
    assert str(DAVE) not in join["data"]["users"]
    assert message["data"] == {"uid": str(ALICE), "message": SENTINEL, "channel": str(GENERAL)}
    assert "messages from members on no map dropped: 1" in (detail or "")


@pytest.mark.slow
async def test_beyond_the_hold_limit_chat_is_dropped_never_shown_early(
    fake, monkeypatch, tmp_path, caplog
):
    monkeypatch.setattr(delay, "HOLD_LIMIT", 1)
    config = f"[guilds.{LOUNGE}]\nchat_delay = 0.2\n"
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            with caplog.at_level(logging.WARNING):
                await fake.say(LOUNGE, GENERAL, ALICE, "held")
                await fake.say(LOUNGE, GENERAL, ALICE, "no room to hold")
                first = await client.recv_type("message")
                await fake.say(LOUNGE, GENERAL, ALICE, SENTINEL)
                second = await client.recv_type("message")
    assert [first["data"]["message"], second["data"]["message"]] == ["held", SENTINEL]
    assert "1 messages already wait out chat_delay; one dropped" in caplog.text
