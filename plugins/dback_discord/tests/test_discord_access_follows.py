"""Access follows the guild with the Discord plugin: a viewer admitted by Discord login is
taken out, and told, the moment the guild leaves the list (the bot was removed from it);
a rename, which keeps the rules, keeps it in."""

from __future__ import annotations

from discord_world import ALICE, LOUNGE, WORKSHOP, discord_dback

from dback_core.testing import Client
from dback_core.wire import protocol

LOGIN_CONFIG = f"""
[guilds.{LOUNGE}]
discord_login = true
"""


async def test_a_guild_the_bot_leaves_takes_its_logged_in_viewers_out(fake, monkeypatch, tmp_path):
    fake.oauth_users = {"member-token": [LOUNGE, WORKSHOP]}
    async with discord_dback(fake, monkeypatch, tmp_path, LOGIN_CONFIG) as server:
        async with Client(server) as viewer:
            joined = await viewer.join(str(LOUNGE), discordToken="member-token")
            await fake.rename_guild(LOUNGE, "Lounge, renamed")
            renamed = await viewer.wait_for(lambda f: f["type"] == "server-list")
            await fake.set_status(LOUNGE, ALICE, "dnd")
            still_live = await viewer.wait_for(lambda f: f["type"] == "presence")
            await fake.leave_guild(LOUNGE)
            told = await viewer.recv_type("error")
            after = await viewer.pending(str(WORKSHOP))
            again = await viewer.join(str(LOUNGE), discordToken="member-token")
    assert joined["type"] == "server-join"
    assert renamed["data"][str(LOUNGE)]["name"] == "Lounge, renamed"
    assert still_live["data"]["status"] == "dnd"
    assert told["data"]["message"] == protocol.UNKNOWN_SERVER
    assert [frame["type"] for frame in after] == ["server-list"]
    assert str(LOUNGE) not in after[0]["data"]
    assert again["data"]["message"] == protocol.UNKNOWN_SERVER
