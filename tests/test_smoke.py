from dback_core.testing import Client


async def test_mock_default_guild_is_served(mock_server):
    async with Client(mock_server) as client:
        assert client.server_list["232769614004748288"]["default"] is True
        join = await client.join(None)
        assert join["type"] == "server-join"
        assert join["data"]["request"] == {"server": "dworld"}
        assert join["data"]["users"]
