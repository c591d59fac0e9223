"""When Discord fails the plugin says so: its health, /readyz, and what viewers see."""

from __future__ import annotations

import asyncio
import logging

import pytest
from discord_world import ALICE, LOUNGE, WORKSHOP, discord_dback

from dback_core.plugin.health import FAILED, SERVING, UNAVAILABLE
from dback_core.testing import Client

#: [bot] keys (they follow FAST_BOT): retry refused intents after 0.1 s, report a lost
#: gateway after 0.1 s.
QUICK = "failed_retry = 0.1\nfailed_retry_max = 0.2\nunavailable_after = 0.1\n"
#: The same, and a lost gateway withdraws the guilds 0.2 s after it was reported.
WITHDRAWING = QUICK + "withdraw_after = 0.2\n"


def health(server):
    return server.plugins.find("dback-discord").health


async def wait_for_status(server, status: str, timeout: float = 10.0) -> None:
    async def reached() -> None:
        while health(server).status != status:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(reached(), timeout)


async def http_get(server, path: str) -> tuple[int, str]:
    host, port = server.address
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def readyz(server) -> int:
    return (await http_get(server, "/readyz"))[0]


async def next_list(client: Client, timeout: float = 10.0) -> dict:
    return (await client.recv_type("server-list", timeout=timeout))["data"]


async def test_refused_intents_at_startup_fail_loudly_and_heal_when_switched_on(
    fake, monkeypatch, tmp_path, caplog
):
    fake.refuse_privileged = True
    async with discord_dback(fake, monkeypatch, tmp_path, QUICK) as server:
        await wait_for_status(server, FAILED)
        reason = health(server).reason
        status = await readyz(server)
        _, plugins = await http_get(server, "/api/plugins")
        _, metrics = await http_get(server, "/metrics")
        async with Client(server) as client:
            before = client.server_list
            fake.refuse_privileged = False
            after = await next_list(client)
        await wait_for_status(server, SERVING)
        healed = await readyz(server)
    assert "4014" in reason and "Presence Intent" in reason
    assert status == 503 and before == {}
    assert '"failed"' in plugins and "Presence Intent" in plugins
    assert 'dback_plugin_status{plugin="dback-discord"' in metrics
    assert 'status="failed"' in metrics
    assert set(after) == {str(LOUNGE), str(WORKSHOP)}
    assert healed == 200
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("Server Members Intent" in message for message in errors)


async def test_intents_switched_off_at_runtime_withdraw_the_guilds_until_healed(
    fake, monkeypatch, tmp_path
):
    async with discord_dback(fake, monkeypatch, tmp_path, QUICK) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            await fake.revoke_intents()
            withdrawn = await next_list(client)
            await wait_for_status(server, FAILED)
            fake.refuse_privileged = False
            back = await next_list(client)
            rejoin = await client.join(str(LOUNGE))
    assert withdrawn == {}
    assert set(back) == {str(LOUNGE), str(WORKSHOP)}
    assert rejoin["data"]["users"][str(ALICE)]["status"] == "online"


@pytest.mark.slow
async def test_a_reset_token_fails_the_plugin_for_good_with_what_to_do(
    fake, monkeypatch, tmp_path, caplog
):
    old_token = fake.token
    async with discord_dback(fake, monkeypatch, tmp_path, QUICK) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            await fake.reset_token()
            withdrawn = await next_list(client)
            await wait_for_status(server, FAILED)
            await asyncio.sleep(0.5)  # several retry periods: no new attempt is made
            refused = await client.join(str(LOUNGE))
        status = await readyz(server)
    assert withdrawn == {} and refused["type"] == "error"
    assert "4004" in health(server).reason and "restart dback" in health(server).reason
    assert fake.identifies == 1 and status == 503
    assert old_token not in caplog.text and fake.token not in caplog.text


@pytest.mark.slow
async def test_a_lost_gateway_makes_the_plugin_unavailable_until_it_resumes(
    fake, monkeypatch, tmp_path
):
    async with discord_dback(fake, monkeypatch, tmp_path, QUICK) as server:
        await wait_for_status(server, SERVING)
        fake.gateway_down = True
        await fake.drop_connections()
        await wait_for_status(server, UNAVAILABLE)
        reason = health(server).reason
        status = await readyz(server)
        fake.gateway_down = False
        await wait_for_status(server, SERVING, timeout=20)
    assert "lost the connection to Discord" in reason and status == 503
    assert fake.resumes == 1


@pytest.mark.slow
async def test_a_gateway_lost_for_long_withdraws_the_guilds_until_it_is_back(
    fake, monkeypatch, tmp_path
):
    async with discord_dback(fake, monkeypatch, tmp_path, WITHDRAWING) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            fake.gateway_down = True
            await fake.drop_connections()
            await wait_for_status(server, UNAVAILABLE)
            await wait_for_status(server, FAILED)
            withdrawn = await next_list(client)
            reason = health(server).reason
            fake.gateway_down = False
            back = await next_list(client, timeout=20)
            rejoin = await client.join(str(LOUNGE))
        await wait_for_status(server, SERVING)
    assert withdrawn == {} and "no connection to Discord" in reason
    assert set(back) == {str(LOUNGE), str(WORKSHOP)}
    assert rejoin["data"]["users"][str(ALICE)]["status"] == "online"


async def test_a_guild_outage_withdraws_the_guild_until_it_is_back(fake, monkeypatch, tmp_path):
    async with discord_dback(fake, monkeypatch, tmp_path, QUICK) as server:
        async with Client(server) as client:
            await client.join(str(LOUNGE))
            await fake.guild_outage(LOUNGE)
            during = await next_list(client)
            refused = await client.join(str(LOUNGE))
            await fake.guild_recovered(LOUNGE)
            after = await next_list(client)
            rejoin = await client.join(str(LOUNGE))
    assert set(during) == {str(WORKSHOP)} and refused["type"] == "error"
    assert set(after) == {str(LOUNGE), str(WORKSHOP)}
    assert rejoin["data"]["users"][str(ALICE)]["status"] == "online"
