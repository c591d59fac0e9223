"""Chat as people wrote it (names, emoji, attachments, a length cap), and only where allowed."""

from __future__ import annotations

from discord_world import ALICE, GENERAL, LOUNGE, RANDOM, discord_dback

from dback_core.testing import Client
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
