"""The bot's event queue: a consumer that falls far behind gets a reload, not a memory leak."""

from __future__ import annotations

from dback_core.plugin.events import Presence, Refresh
from dback_discord.bot import DzoneClient, EventQueue
from dback_discord.config import DiscordConfig

#: Serves guilds without a table even before the bot knows whether it is public.
EVERY_GUILD = DiscordConfig(token="unused", serve_unlisted=True)


async def test_a_full_queue_is_replaced_by_a_reload():
    events = EventQueue(3)
    client = DzoneClient(EVERY_GUILD, events, lambda status, reason: None)
    try:
        for number in range(3):
            client.queue(Presence("1", str(number), "online", username="x"))
        client.queue(Presence("1", "4", "online", username="x"))
        queued = events.drain()
    finally:
        await client.close()
    assert queued == [Refresh(None)]


async def test_a_waiting_guild_list_reload_is_not_queued_twice():
    """Every guild that arrives asks for a list reload; one waiting serves them all."""
    events = EventQueue(100)
    client = DzoneClient(EVERY_GUILD, events, lambda status, reason: None)
    try:
        client.queue(Refresh(None))
        client.queue(Refresh("1"))
        client.queue(Refresh(None))
        client.queue(Refresh("2"))
        first = [await events.take() for _ in range(3)]
        client.queue(Refresh(None))  # taken by the core meanwhile: a new one is needed
        second = events.drain()
    finally:
        await client.close()
    assert first == [Refresh(None), Refresh("1"), Refresh("2")]
    assert second == [Refresh(None)]
