"""Run a fake Discord in its own process, for measurements.

``python discord_fake_process.py MEMBERS`` serves one large guild;
``python discord_fake_process.py shards SHARDS GUILDS MEMBERS`` serves ``GUILDS`` guilds of
``MEMBERS`` members spread over ``SHARDS`` shards (the count ``/gateway/bot`` recommends).
It prints the port, then serves until its standard input closes. In its own process the
fake's work and memory do not blur what is measured in the process under test.
"""

from __future__ import annotations

import asyncio
import sys

from discord_fake import FakeDiscord
from discord_shard_world import build_sharded_world

BIG = 333333333333333333
FIRST = 100_000
#: One member in this many is online: about what a large community shows.
ONLINE_EVERY = 5


def build(members: int) -> FakeDiscord:
    fake = FakeDiscord(bot_id=4242)
    fake.add_guild(BIG, "Big")
    fake.add_role(BIG, 301, "Mod", color=0x3498DB, position=1)
    for number in range(members):
        status = "online" if number % ONLINE_EVERY == 0 else "offline"
        roles = [301] if number % 50 == 0 else []
        fake.add_member(BIG, FIRST + number, f"member{number}", status=status, roles=roles)
    return fake


async def main(fake: FakeDiscord) -> None:
    await fake.start()
    print(fake.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await fake.stop()


def build_sharded(shards: int, guilds: int, members: int) -> FakeDiscord:
    fake = build_sharded_world(guilds, members)
    fake.recommended_shards = shards
    return fake


if __name__ == "__main__":
    if sys.argv[1] == "shards":
        world = build_sharded(*(int(argument) for argument in sys.argv[2:5]))
    else:
        world = build(int(sys.argv[1]))
    asyncio.run(main(world))
