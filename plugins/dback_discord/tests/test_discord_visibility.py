"""Only chat members can read reaches the map: channel permissions, live, with the real
discord.py against the fake Discord."""

from __future__ import annotations

import asyncio
import json
import logging

from discord_fake import ADMINISTRATOR, EVERYONE_DEFAULT, FORUM, VIEW_CHANNEL
from discord_world import ALICE, GENERAL, LOUNGE, MOD, RANDOM, discord_dback

from dback_core.testing import Client

STAFF, MOD_LOG, NOTES, FORUM_ID = 601, 602, 603, 604
PUBLIC_THREAD, STAFF_THREAD, PRIVATE_THREAD, FORUM_POST = 701, 702, 703, 704
#: The fake's ``@everyone`` role has the guild's id.
EVERYONE = LOUNGE
LOCKED = {EVERYONE: (0, VIEW_CHANNEL)}
SENTINEL = "the end"


def detail(server) -> str | None:
    return server.plugins.find("dback-discord").detail


async def api_plugins(server) -> list[dict]:
    """The plugins as ``/api/plugins`` lists them, over a real HTTP request."""
    host, port = server.address
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /api/plugins HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = await reader.read()
    writer.close()
    body = json.loads(raw.partition(b"\r\n\r\n")[2])
    return list(body["plugins"])


async def heard_until_sentinel(client: Client) -> list[str]:
    """Chat texts up to the sentinel (said last, in #general)."""
    messages: list[str] = []
    while not messages or messages[-1] != SENTINEL:
        messages.append((await client.recv_type("message"))["data"]["message"])
    return messages[:-1]


async def wait_for_detail(server, text: str) -> str:
    async def shown() -> str:
        while text not in (detail(server) or ""):
            await asyncio.sleep(0.02)
        return detail(server) or ""

    return await asyncio.wait_for(shown(), 10)


def lock_down(fake) -> None:
    """#staff and #mod-log are closed to @everyone (the mods' role may view #staff); a
    forum is public; threads in #general and #staff, one private, one forum post."""
    fake.add_channel(LOUNGE, STAFF, "staff", overwrites={**LOCKED, MOD: (VIEW_CHANNEL, 0)})
    fake.add_channel(LOUNGE, MOD_LOG, "mod-log", overwrites=LOCKED)
    fake.add_channel(LOUNGE, FORUM_ID, "questions", kind=FORUM)
    fake.add_thread(LOUNGE, PUBLIC_THREAD, GENERAL, "a thread")
    fake.add_thread(LOUNGE, STAFF_THREAD, STAFF, "staff thread")
    fake.add_thread(LOUNGE, PRIVATE_THREAD, GENERAL, "secret thread", private=True)
    fake.add_thread(LOUNGE, FORUM_POST, FORUM_ID, "how do I")


async def test_only_channels_everyone_can_view_are_relayed(fake, monkeypatch, tmp_path):
    lock_down(fake)
    said = [
        (STAFF, "staff only"),
        (MOD_LOG, "ban log"),
        (STAFF_THREAD, "staff thread"),
        (PRIVATE_THREAD, "private thread"),
        (PUBLIC_THREAD, "public thread"),
        (FORUM_POST, "forum post"),
        (RANDOM, "random"),
    ]
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            for channel, text in said:
                await fake.say(LOUNGE, channel, ALICE, text)
            await fake.say(LOUNGE, GENERAL, ALICE, SENTINEL)
            heard = await heard_until_sentinel(client)
            shown = detail(server)
            listed = await api_plugins(server)
    assert heard == ["public thread", "forum post", "random"]
    # Lounge: general, random, questions of 5 channels; Workshop: its one channel.
    assert "chat relayed from channels: Lounge 3/5, Workshop 1/1" in (shown or "").split("; ")
    assert {entry["name"]: entry["detail"] for entry in listed}["dback-discord"] == shown


async def test_a_channel_locked_while_a_viewer_watches_stops_at_once(fake, monkeypatch, tmp_path):
    fake.add_thread(LOUNGE, PUBLIC_THREAD, RANDOM, "a thread")
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            await fake.say(LOUNGE, RANDOM, ALICE, "before the lock")
            await fake.say(LOUNGE, PUBLIC_THREAD, ALICE, "thread before the lock")
            before = [(await client.recv_type("message"))["data"]["message"] for _ in range(2)]
            await fake.set_overwrites(LOUNGE, RANDOM, LOCKED)
            await fake.say(LOUNGE, RANDOM, ALICE, "after the lock")
            await fake.say(LOUNGE, PUBLIC_THREAD, ALICE, "thread after the lock")
            await fake.say(LOUNGE, GENERAL, ALICE, SENTINEL)
            locked = await heard_until_sentinel(client)
            locked_detail = await wait_for_detail(server, "Lounge 1/2")
            await fake.set_overwrites(LOUNGE, RANDOM, {})
            await fake.say(LOUNGE, RANDOM, ALICE, "open again")
            await fake.say(LOUNGE, GENERAL, ALICE, SENTINEL)
            reopened = await heard_until_sentinel(client)
            reopened_detail = await wait_for_detail(server, "Lounge 2/2")
    assert before == ["before the lock", "thread before the lock"]
    assert locked == []
    assert "Lounge 1/2" in locked_detail and "Lounge 2/2" in reopened_detail
    assert reopened == ["open again"]


async def test_everyone_losing_view_channel_stops_the_channels_without_an_allow(
    fake, monkeypatch, tmp_path
):
    """GUILD_ROLE_UPDATE: @everyone may no longer view channels by default (a verification
    gate); a channel whose overwrite allows @everyone stays public. Administrator on
    @everyone makes everything public."""
    fake.add_channel(LOUNGE, NOTES, "welcome", overwrites={EVERYONE: (VIEW_CHANNEL, 0)})
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            await fake.set_role_permissions(LOUNGE, EVERYONE, EVERYONE_DEFAULT & ~VIEW_CHANNEL)
            await fake.say(LOUNGE, GENERAL, ALICE, "general, gated")
            await fake.say(LOUNGE, NOTES, ALICE, "welcome, still open")
            gated = (await client.recv_type("message"))["data"]["message"]
            gated_detail = await wait_for_detail(server, "Lounge 1/3")
            await fake.set_role_permissions(LOUNGE, EVERYONE, ADMINISTRATOR)
            await fake.say(LOUNGE, GENERAL, ALICE, "everyone is an admin")
            admin = (await client.recv_type("message"))["data"]["message"]
    assert gated == "welcome, still open"
    assert "Lounge 1/3" in gated_detail
    assert admin == "everyone is an admin"


async def test_channels_and_threads_created_live_follow_their_permissions(
    fake, monkeypatch, tmp_path
):
    async with discord_dback(fake, monkeypatch, tmp_path) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            await fake.create_channel(LOUNGE, STAFF, "staff", overwrites=LOCKED)
            await fake.create_channel(LOUNGE, NOTES, "notes")
            await fake.create_thread(LOUNGE, STAFF_THREAD, STAFF, "staff thread")
            await fake.create_thread(LOUNGE, PUBLIC_THREAD, NOTES, "notes thread")
            await fake.create_thread(LOUNGE, PRIVATE_THREAD, NOTES, "private", private=True)
            for channel in (STAFF, STAFF_THREAD, PRIVATE_THREAD, NOTES, PUBLIC_THREAD):
                await fake.say(LOUNGE, channel, ALICE, f"in {channel}")
            await fake.say(LOUNGE, GENERAL, ALICE, SENTINEL)
            heard = await heard_until_sentinel(client)
            created = await wait_for_detail(server, "Lounge 3/4")
            await fake.delete_channel(LOUNGE, NOTES)
            deleted = await wait_for_detail(server, "Lounge 2/3")
    assert heard == [f"in {NOTES}", f"in {PUBLIC_THREAD}"]
    assert "Lounge 3/4" in created and "Lounge 2/3" in deleted


async def test_publish_channels_names_what_is_relayed_anyway(fake, monkeypatch, tmp_path):
    """Naming a channel publishes it and its public threads; a private thread is published
    only under its own name. Filters still narrow what is published."""
    lock_down(fake)
    fake.add_thread(LOUNGE, 705, MOD_LOG, "mod thread", private=True)
    config = (
        f'[guilds.{LOUNGE}]\npublish_channels = [{STAFF}, "mod thread"]\n'
        f"ignore_channels = [{RANDOM}]\n"
    )
    said = [
        (STAFF, "staff"),
        (STAFF_THREAD, "staff thread"),
        (MOD_LOG, "mod log"),
        (705, "named private thread"),
        (RANDOM, "ignored"),
    ]
    async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            for channel, text in said:
                await fake.say(LOUNGE, channel, ALICE, text)
            await fake.say(LOUNGE, GENERAL, ALICE, SENTINEL)
            heard = await heard_until_sentinel(client)
            shown = detail(server)
    assert heard == ["staff", "staff thread", "named private thread"]
    assert "Lounge 3/5" in (shown or "")  # general, questions, staff; not random, mod-log


READERS = f"""
[guilds.{LOUNGE}]
discord_login = true
readers_role = {MOD}
publish_channels = [{RANDOM}]
"""


async def test_a_members_only_guild_may_choose_the_role_that_counts_as_readers(
    fake, monkeypatch, tmp_path, caplog
):
    """@everyone sees nothing by default; the Mod role sees #general and #staff (its allow
    wins over the @everyone deny) but not #mod-log (#random is published anyway). After the
    role is deleted only #random is relayed, with one WARNING."""
    fake.guilds[LOUNGE].roles[EVERYONE]["permissions"] = "0"
    fake.guilds[LOUNGE].roles[MOD]["permissions"] = str(VIEW_CHANNEL)
    fake.add_channel(LOUNGE, STAFF, "staff", overwrites={**LOCKED, MOD: (VIEW_CHANNEL, 0)})
    fake.add_channel(LOUNGE, MOD_LOG, "mod-log", overwrites={MOD: (0, VIEW_CHANNEL)})
    fake.oauth_users = {"member-token": [LOUNGE]}
    async with discord_dback(fake, monkeypatch, tmp_path, READERS) as server:
        async with Client(server) as client:
            joined = await client.join(str(LOUNGE), discordToken="member-token")
            await fake.say(LOUNGE, MOD_LOG, ALICE, "mod log")
            await fake.say(LOUNGE, STAFF, ALICE, "staff")
            await fake.say(LOUNGE, GENERAL, ALICE, SENTINEL)
            heard = await heard_until_sentinel(client)
            shown = detail(server)
            with caplog.at_level(logging.WARNING):
                await fake.delete_role(LOUNGE, MOD)
                await fake.say(LOUNGE, GENERAL, ALICE, "nobody reads this")
                await fake.say(LOUNGE, RANDOM, ALICE, "published")
                after = (await client.recv_type("message"))["data"]["message"]
                gone = await wait_for_detail(server, "Lounge 1/4")
    assert joined["type"] == "server-join"
    assert heard == ["staff"]
    assert "Lounge 3/4" in (shown or "")
    assert after == "published"
    assert "Lounge 1/4" in gone
    assert f"readers_role {MOD} is not a role of the guild" in caplog.text


async def test_listen_channels_never_publish_and_say_how_to(fake, monkeypatch, tmp_path, caplog):
    """A configuration from before the readers rule that listens to #mod-log: it is no
    longer relayed, and one WARNING names the key that would relay it."""
    lock_down(fake)
    config = f'[guilds.{LOUNGE}]\nlisten_channels = ["mod-log", {GENERAL}]\n'
    with caplog.at_level(logging.WARNING):
        async with discord_dback(fake, monkeypatch, tmp_path, config) as server:
            async with Client(server) as client:
                await client.join(str(LOUNGE))
                await fake.say(LOUNGE, MOD_LOG, ALICE, "ban log")
                await fake.say(LOUNGE, GENERAL, ALICE, SENTINEL)
                heard = await heard_until_sentinel(client)
                # Still private after this change: no second warning. Then opened to all.
                await fake.set_overwrites(LOUNGE, MOD_LOG, {**LOCKED, MOD: (VIEW_CHANNEL, 0)})
                await fake.set_overwrites(LOUNGE, MOD_LOG, {})
                await wait_for_detail(server, "Lounge 2/5")
    assert heard == []
    warnings = [r.message for r in caplog.records if "is in listen_channels" in r.message]
    assert warnings == [
        f"discord: guild {LOUNGE}: #mod-log ({MOD_LOG}) is in listen_channels but its "
        "readers cannot view it, so it is not relayed; add it to publish_channels to relay it"
    ]
