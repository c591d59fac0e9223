"""Discord login for guilds that require it, OAuth client ids, and refused bot logins."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from discord_world import LOUNGE, WORKSHOP, discord_dback

from dback_core.loading.plugins import ENTRY_POINT_GROUP, NOT_CONFIGURED, load_plugins
from dback_core.testing import Client

LOGIN_CONFIG = f"""
[guilds.{LOUNGE}]
discord_login = true
client_id = "778899"
"""


async def test_discord_login_admits_members_of_the_guild_only(fake, monkeypatch, tmp_path):
    fake.oauth_users = {"member-token": [WORKSHOP, LOUNGE], "outsider-token": [WORKSHOP]}
    async with discord_dback(fake, monkeypatch, tmp_path, LOGIN_CONFIG) as server:
        async with Client(server) as client:
            required = await client.join(str(LOUNGE))
            outsider = await client.join(str(LOUNGE), discordToken="outsider-token")
            invalid = await client.join(str(LOUNGE), discordToken="expired-token")
            member = await client.join(str(LOUNGE), discordToken="member-token")
    assert client.server_list[str(LOUNGE)]["passworded"] is True
    assert required["type"] == "error" and "login" in required["data"]["message"].lower()
    assert outsider["type"] == "error" and invalid["type"] == "error"
    assert member["type"] == "server-join"
    assert member["data"]["clientId"] == "778899"
    # Each token asked once who it is; the invalid one's guilds were not asked for.
    assert fake.oauth_requests.count("/users/@me") == 3
    assert fake.oauth_requests.count("/users/@me/guilds") == 2


async def test_discord_login_is_refused_while_discord_fails(fake, monkeypatch, tmp_path, caplog):
    fake.oauth_users = {"member-token": [LOUNGE]}
    fake.oauth_outage = 502
    async with discord_dback(fake, monkeypatch, tmp_path, LOGIN_CONFIG) as server:
        async with Client(server) as client:
            refused = await client.join(str(LOUNGE), discordToken="member-token")
            fake.oauth_outage = None
            admitted = await client.join(str(LOUNGE), discordToken="member-token")
    assert refused["type"] == "error" and admitted["type"] == "server-join"
    assert "cannot check logins right now" in refused["data"]["message"]
    assert "login check answered HTTP 502" in caplog.text
    assert "member-token" not in caplog.text


async def test_guilds_without_discord_login_are_not_decided_by_a_token(fake, monkeypatch, tmp_path):
    fake.oauth_users = {"member-token": [WORKSHOP, LOUNGE]}
    config = f'[guilds.{LOUNGE}]\npassword = "sesame"\n'
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        async with Client(server) as client:
            token_only = await client.join(str(LOUNGE), discordToken="member-token")
            open_guild = await client.join(str(WORKSHOP))
    assert token_only["type"] == "error"
    assert "clientId" not in open_guild["data"]
    assert "GET /api/v10/users/@me/guilds" not in fake.requests


async def test_refused_privileged_intents_are_explained_and_dback_keeps_serving(
    fake, monkeypatch, tmp_path, caplog
):
    fake.refuse_privileged = True
    caplog.set_level(logging.INFO)
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            assert client.server_list == {}
        health = server.plugins.find("dback-discord").health
    assert health.status == "failed" and "4014" in health.reason
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    explained = [message for message in errors if "4014" in message]
    assert explained, errors
    for switch in ("Presence Intent", "Server Members Intent", "Message Content Intent"):
        assert switch in explained[0]


async def test_a_refused_token_is_reported_without_showing_it(fake, monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    async with discord_dback(fake, monkeypatch, tmp_path, token="a-revoked-token") as server:
        async with Client(server) as client:
            assert client.server_list == {}
        health = server.plugins.find("dback-discord").health
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "Discord refused the bot token in DBACK_DISCORD_TOKEN" in text
    assert health.status == "failed" and "Reset Token" in health.reason
    assert "a-revoked-token" not in text and fake.token not in text


def test_the_installed_plugin_is_not_configured_without_a_token(monkeypatch):
    monkeypatch.delenv("DBACK_DISCORD_TOKEN", raising=False)
    names = {entry_point.name for entry_point in entry_points(group=ENTRY_POINT_GROUP)}
    assert "dback-discord" in names
    (record,) = load_plugins(environ={"DBACK_PLUGINS": "dback-discord"}).records
    assert record.status == NOT_CONFIGURED
    assert "DBACK_DISCORD_TOKEN" in record.error
