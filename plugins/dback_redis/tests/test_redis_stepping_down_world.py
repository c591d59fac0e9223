"""A publisher stepping down keeps its viewers in their guild.

From the moment its lease is lost the providers answer nothing and the publisher's data
hooks step aside; the edge it becomes serves the snapshot. Stopping the publisher's tasks
in between can take a second (redis-py can hold up a cancelled task), and a reload then -
the next publisher's providers put a ``Refresh`` on the bus as they start, and a follower
still running applies it - found no guild at all: every viewer was taken out of its guild
and saw nothing more until it reconnected (a 10-minute soak: 89 viewers, 35 s of chat).
"""

from __future__ import annotations

import asyncio

import pytest
from test_redis_inprocess import WAIT, Provider

from dback_core.testing import Client, running_server
from dback_redis.config import RedisConfig
from dback_redis.plugin import RedisPlugin
from dback_redis.publisher import Publisher

pytestmark = pytest.mark.redis


async def until(condition, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not condition():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.02)


async def test_viewers_stay_in_their_guild_while_the_publisher_steps_down(namespace, monkeypatch):
    url = await namespace.new_user("auto")
    plugin = RedisPlugin(
        RedisConfig(url=url, role="auto", prefix=namespace.prefix, lease_seconds=1.5)
    )
    async with running_server(
        [("provider", Provider()), ("dback-redis", plugin)], environ={"DBACK_PLUGINS": ""}
    ) as server:
        elected = plugin.elected
        await until(lambda: elected.leading, "the only process was not elected")
        async with Client(server, timeout=WAIT) as viewer:
            await viewer.join("one")
            assert len(server.fanout.watchers("1")) == 1

            # The publisher's old tasks take their time to end, as they can in redis-py.
            stopping, release = asyncio.Event(), asyncio.Event()
            stop = Publisher.stop

            async def slow_stop(self: Publisher) -> None:
                stopping.set()
                await release.wait()
                await stop(self)

            monkeypatch.setattr(Publisher, "stop", slow_stop)
            await namespace.admin.delete(f"{namespace.prefix}:lease")  # Redis forgot it
            await asyncio.wait_for(stopping.wait(), WAIT)
            # Meanwhile a reload: what the next publisher's starting providers cause.
            await server.refresh(None)
            assert "1" in server.directory.servers
            release.set()
            await until(lambda: not elected.leading, "it never became an edge")
            await server.refresh(None)
            assert "1" in server.directory.servers
            assert len(server.fanout.watchers("1")) == 1, "the viewer was taken out of its guild"
