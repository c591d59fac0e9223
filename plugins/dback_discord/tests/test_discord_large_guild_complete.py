"""Large guilds without silently missing members: member requests Discord rate limits are
asked again until the list is complete, and members discord.py never cached appear when
they come online or speak."""

from __future__ import annotations

import asyncio

import pytest
from discord_world import discord_dback
from test_discord_large_guild import BIG, FIRST, build_big_guild

from dback_core.testing import Client

TALK = 777
#: The bot as one gateway connection, and as two shards (discord.py's sharded client).
CLIENTS = pytest.mark.parametrize("bot", ["", "shards = 2\n"], ids=["one", "sharded"])


def plugin_detail(server) -> str:
    return server.plugins.find("dback-discord").detail or ""


@pytest.mark.slow
async def test_a_rate_limited_member_list_is_asked_again_until_complete(
    fake, monkeypatch, tmp_path
):
    """Refused twice: discord.py gives up waiting after 5 s and the guild is served with the
    members GUILD_CREATE brought (the online ones), the detail saying so; the plugin asks
    again after ``retry_after``, then twice that, and the viewers get the whole list."""
    build_big_guild(fake, 400)
    fake.chunk_rate_limits = 2
    fake.chunk_retry_after = 2.5
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        detail_while_incomplete = plugin_detail(server)
        async with Client(server, timeout=15) as viewer:
            partial = await viewer.join(str(BIG))
            complete = await viewer.recv_type("server-join")
        detail_after = plugin_detail(server)
        async with Client(server) as later:
            later_join = await later.join(str(BIG))
    assert "Big: members 101/401, retrying" in detail_while_incomplete
    assert len(partial["data"]["users"]) == 101  # the online members and the bot
    assert len(complete["data"]["users"]) == 401
    assert len(later_join["data"]["users"]) == 401
    assert "retrying" not in detail_after
    assert fake.rate_limited_requests == 2 and fake.too_early == 0


@CLIENTS
async def test_a_short_rate_limit_is_waited_out_before_the_guild_is_served(
    fake, monkeypatch, tmp_path, bot
):
    build_big_guild(fake, 400)
    fake.chunk_rate_limits = 1
    fake.chunk_retry_after = 0.3
    async with discord_dback(fake, monkeypatch, tmp_path, bot) as server:
        async with Client(server) as viewer:
            join = await viewer.join(str(BIG))
        detail = plugin_detail(server)
    assert len(join["data"]["users"]) == 401
    assert "retrying" not in detail
    assert fake.rate_limited_requests == 1 and fake.too_early == 0


@pytest.mark.slow
@CLIENTS
async def test_members_missing_from_the_cache_appear_when_they_come_online_or_speak(
    fake, monkeypatch, tmp_path, bot
):
    """Two offline members were left out of the member list; PRESENCE_UPDATE names only the
    user's id, as Discord may; a message carries the author. Each is asked for by id and
    shown with their name and status, and later joins list them."""
    build_big_guild(fake, 400)
    fake.add_channel(BIG, TALK, "talk")
    comes_online, speaks = FIRST + 1, FIRST + 2
    fake.unchunked = {comes_online, speaks}
    async with discord_dback(fake, monkeypatch, tmp_path, bot) as server:
        async with Client(server) as viewer:
            before = await viewer.join(str(BIG))
            await fake.set_status(BIG, comes_online, "idle")
            online = await viewer.wait_for(
                lambda f: f["type"] == "presence" and f["data"]["uid"] == str(comes_online)
            )
            fake.guilds[BIG].members[speaks].status = "online"  # Discord knows; the bot not
            await fake.say(BIG, TALK, speaks, "hello, nobody knows me")
            spoke = await viewer.wait_for(
                lambda f: f["type"] == "presence" and f["data"]["uid"] == str(speaks)
            )
        async with Client(server) as later:
            after = await later.join(str(BIG))
            await asyncio.sleep(0)
    assert str(comes_online) not in before["data"]["users"]
    assert str(speaks) not in before["data"]["users"]
    assert online["data"]["status"] == "idle" and online["data"]["username"] == "member1"
    assert spoke["data"]["status"] == "online" and spoke["data"]["username"] == "member2"
    assert after["data"]["users"][str(comes_online)]["status"] == "idle"
    assert after["data"]["users"][str(speaks)]["status"] == "online"
    assert sorted(map(sorted, fake.member_queries)) == [[comes_online], [speaks]]
