"""Large guilds: correct statuses from the start, and joins that stay deliverable."""

from __future__ import annotations

import discord_fake
from discord_world import discord_dback

from dback_core.testing import Client

BIG = 333333333333333333
FIRST = 100_000


def build_big_guild(fake, members: int) -> None:
    """A guild where every fourth member is online."""
    fake.add_guild(BIG, "Big")
    for number in range(members):
        status = "online" if number % 4 == 0 else "offline"
        fake.add_member(BIG, FIRST + number, f"member{number}", status=status)


async def test_a_guild_too_large_for_presences_at_startup_starts_with_correct_statuses(
    fake, monkeypatch, tmp_path
):
    """Over Discord's presence limit GUILD_CREATE has no presences; the member chunks must
    be asked for with them, or everyone is drawn offline."""
    monkeypatch.setattr(discord_fake, "PRESENCE_LIMIT", 300)
    build_big_guild(fake, 400)
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            join = await client.join(str(BIG))
    users = join["data"]["users"]
    online = {uid for uid, user in users.items() if user["status"] == "online"}
    assert len(users) == 401  # with the bot
    assert online - {str(fake.bot["id"])} == {str(FIRST + n) for n in range(0, 400, 4)}
    assert fake.member_requests_with_presences >= 1


async def test_above_offline_above_members_only_those_not_offline_are_listed(
    fake, monkeypatch, tmp_path
):
    build_big_guild(fake, 400)
    config = f"[guilds.{BIG}]\noffline_above = 300\n"
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        async with Client(server) as client:
            join = await client.join(str(BIG))
            await fake.set_status(BIG, FIRST, "offline")
            gone = await client.recv_type("presence")
            await fake.set_status(BIG, FIRST + 1, "idle")
            back = await client.recv_type("presence")
    users = join["data"]["users"]
    assert len(users) == 101 and all(user["status"] == "online" for user in users.values())
    assert gone["data"]["uid"] == str(FIRST) and gone["data"].get("delete") is True
    assert back["data"]["uid"] == str(FIRST + 1) and back["data"]["status"] == "idle"


async def test_no_join_lists_more_than_max_listed_members(fake, monkeypatch, tmp_path, caplog):
    build_big_guild(fake, 400)
    config = f"[guilds.{BIG}]\noffline_above = 300\nmax_listed = 40\n"
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        async with Client(server) as first, Client(server) as second:
            joins = [await first.join(str(BIG)), await second.join(str(BIG))]
    assert [len(join["data"]["users"]) for join in joins] == [40, 40]
    warnings = [r.getMessage() for r in caplog.records if "max_listed" in r.getMessage()]
    assert len(warnings) == 1 and "61 more" in warnings[0]  # 100 online and the bot, less 40
