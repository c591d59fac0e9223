"""A public bot (anyone can add it) serves only the guilds its configuration allows."""

from __future__ import annotations

import logging

from discord_world import LOUNGE, WORKSHOP, discord_dback

from dback_core.testing import Client

LISTED = f"[guilds.{LOUNGE}]\nalias = 'The Lounge'\n"


def warnings_about(caplog, guild_id: int) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and f"({guild_id})" in record.getMessage()
    ]


async def test_a_public_bot_serves_only_listed_guilds_and_names_the_others_once(
    fake, monkeypatch, tmp_path, caplog
):
    fake.bot_public = True
    async with discord_dback(fake, monkeypatch, tmp_path, LISTED) as server:
        async with Client(server) as client:
            listed = client.server_list
            refused = await client.join(str(WORKSHOP))
            joined = await client.join(str(LOUNGE))
            await fake.rename_guild(WORKSHOP, "Workshop 2")  # no second warning for it
            await fake.set_status(LOUNGE, 1003, "idle")
            await client.recv_type("presence")
    assert set(listed) == {str(LOUNGE)}
    assert refused["type"] == "error" and joined["type"] == "server-join"
    (warning,) = warnings_about(caplog, WORKSHOP)
    assert "'Workshop'" in warning and f"[guilds.{WORKSHOP}]" in warning
    assert str(tmp_path / "discord.toml") in warning and "public" in warning


async def test_a_public_bot_serves_every_guild_when_the_defaults_say_so(
    fake, monkeypatch, tmp_path, caplog
):
    fake.bot_public = True
    config = "[defaults]\nenabled = true\n" + LISTED
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        async with Client(server) as client:
            listed = client.server_list
    assert set(listed) == {str(LOUNGE), str(WORKSHOP)}
    assert not warnings_about(caplog, WORKSHOP)


async def test_a_private_bot_serves_every_guild_by_default(fake, monkeypatch, tmp_path):
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            listed = client.server_list
    assert set(listed) == {str(LOUNGE), str(WORKSHOP)}


async def test_an_allow_list_serves_only_its_guilds_and_a_disabled_guild_is_not_served(
    fake, monkeypatch, tmp_path, caplog
):
    allow_list = "[defaults]\nenabled = false\n" + LISTED
    async with discord_dback(fake, monkeypatch, tmp_path, allow_list) as server:
        async with Client(server) as client:
            only_listed = client.server_list
    disabled = f"[guilds.{WORKSHOP}]\nenabled = false\n"
    caplog.clear()
    caplog.set_level(logging.INFO)
    async with discord_dback(fake, monkeypatch, tmp_path, disabled) as server:
        async with Client(server) as client:
            without_disabled = client.server_list
    assert set(only_listed) == {str(LOUNGE)} and only_listed[str(LOUNGE)]["name"] == "The Lounge"
    assert set(without_disabled) == {str(LOUNGE)}
    assert not [r for r in caplog.records if f"({WORKSHOP})" in r.getMessage()]
