"""The mock as a client sees it, through dback-core's pytest plugin: a real server with only
the mock, a real WebSocket client."""

from __future__ import annotations

from dback_mock.world import DEFAULT_GUILD, GUILDS

FAST = {"DBACK_MOCK_INTERVAL": "0.05", "DBACK_MOCK_SEED": "7"}
PASSWORDED = next(guild for guild in GUILDS if guild.passworded)


async def test_the_four_guilds_are_listed_and_the_default_is_joined(dback):
    server = await dback.start("dback-mock", environ=FAST)
    client = await dback.client(server)
    assert set(client.server_list) == {guild.snowflake for guild in GUILDS}
    world = await client.join("default")
    assert world["type"] == "server-join"
    assert world["data"]["request"]["server"] == "dworld"
    assert len(world["data"]["users"]) == 40


async def test_members_change_while_a_client_watches(dback):
    server = await dback.start("dback-mock", environ=FAST)
    client = await dback.client(server)
    users = (await client.join("default"))["data"]["users"]
    change = await client.recv_type("presence")
    assert change["server"] == DEFAULT_GUILD and change["data"]["uid"] in users


async def test_the_passworded_guild_admits_only_its_password(dback):
    server = await dback.start("dback-mock", environ={**FAST, "DBACK_MOCK_PASSWORD": "sesame"})
    client = await dback.client(server)
    refused = await client.join(PASSWORDED.short_id, password="wrong")
    assert refused["type"] == "error"
    admitted = await client.join(PASSWORDED.short_id, password="sesame")
    assert admitted["type"] == "server-join"


async def test_without_a_password_nobody_is_admitted(dback):
    server = await dback.start("dback-mock", environ=FAST)
    client = await dback.client(server)
    assert (await client.join(PASSWORDED.short_id, password=""))["type"] == "error"
