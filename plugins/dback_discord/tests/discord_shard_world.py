"""A fake Discord whose guilds spread over several shards, for the sharding tests and figures."""

from __future__ import annotations

from discord_fake import FakeDiscord, shard_of

#: The timestamp part of the first guild's snowflake (2021); guild ``n`` adds ``n`` to it, so
#: consecutive guilds fall on consecutive shards.
FIRST_GUILD_MS = 200_000_000_000
BOT = 4242
#: Member ids of guild ``n`` start at ``MEMBER_BASE * (n + 1)``.
MEMBER_BASE = 100_000
#: One member in this many is online.
ONLINE_EVERY = 5


def guild_id(number: int) -> int:
    return (FIRST_GUILD_MS + number) << 22


def channel_id(guild: int) -> int:
    return guild + 1


def member_id(number: int, index: int) -> int:
    return MEMBER_BASE * (number + 1) + index


def build_sharded_world(guilds: int, members: int) -> FakeDiscord:
    """``guilds`` guilds of ``members`` members each (the first online, then one in
    ``ONLINE_EVERY``), each with a #general channel."""
    fake = FakeDiscord(bot_id=BOT)
    for number in range(guilds):
        guild = guild_id(number)
        fake.add_guild(guild, f"Guild {number}")
        fake.add_channel(guild, channel_id(guild), "general")
        for index in range(members):
            status = "online" if index % ONLINE_EVERY == 0 else "offline"
            fake.add_member(guild, member_id(number, index), f"m{number}-{index}", status=status)
    return fake


def guilds_of_shard(fake: FakeDiscord, shard: int, shards: int) -> list[int]:
    return [guild for guild in fake.guilds if shard_of(guild, shards) == shard]
