"""One client address for limits and fair shares: an IPv4 address, or an IPv6 /64."""

from __future__ import annotations

import pytest

from dback_core.plugin.errors import SettingsError
from dback_core.plugin.server_settings import Settings, proxy_networks
from dback_core.testing import Client, running_server
from dback_core.wire import protocol
from dback_core.wire.addresses import address_group, client_address, peer_address


@pytest.mark.parametrize(
    ("host", "counted"),
    [
        ("203.0.113.5", "203.0.113.5"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:DB8:1:3::1", "2001:db8:1:3::/64"),
        ("::1", "::/64"),
        ("::ffff:203.0.113.5", "203.0.113.5"),
        ("fe80::1%eth0", "fe80::/64"),
        ("unknown", "unknown"),
        ("/run/dback.sock", "/run/dback.sock"),
    ],
)
def test_an_ipv6_address_counts_as_its_64(host, counted):
    assert address_group(host) == counted


def test_a_peer_is_counted_by_its_host_only():
    assert peer_address(("2001:db8::7", 443, 0, 0)) == "2001:db8::/64"
    assert peer_address(("127.0.0.2", 5000)) == "127.0.0.2"
    assert peer_address(None) == peer_address(()) == "unknown"


async def test_the_connection_cap_counts_each_loopback_address_apart():
    async with running_server(max_connections_per_address=2) as server:
        clients = [Client(server, local_addr=(f"127.0.0.{n}", 0)) for n in (2, 2, 3, 3)]
        for client in clients:
            await client.__aenter__()
        try:
            assert dict(server.counter.per_address) == {"127.0.0.2": 2, "127.0.0.3": 2}
            with pytest.raises(Exception, match="429"):
                await Client(server, local_addr=("127.0.0.2", 0)).__aenter__()
        finally:
            for client in clients:
                await client.__aexit__(None, None, None)


def test_only_a_trusted_proxy_names_the_client():
    trusted = proxy_networks("127.0.0.1, 10.0.0.0/8")
    assert client_address("127.0.0.1", "198.51.100.7", trusted) == "198.51.100.7"
    # the client's own claims are to the left of what the proxies added
    assert client_address("10.1.2.3", "1.1.1.1, 198.51.100.7, 10.9.9.9", trusted) == (
        "198.51.100.7"
    )
    assert client_address("127.0.0.1", "2001:db8:1:2::9", trusted) == "2001:db8:1:2::/64"
    assert client_address("127.0.0.2", "198.51.100.7", trusted) == "127.0.0.2"
    assert client_address("127.0.0.1", None, trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", "not an address", trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", "198.51.100.7", ()) == "127.0.0.1"
    with pytest.raises(ValueError, match=r"'proxy\.local' is not an IP address"):
        proxy_networks("127.0.0.1, proxy.local")


async def test_behind_a_trusted_proxy_a_guesser_locks_out_only_itself(monkeypatch):
    """Every client comes through the "proxy" at 127.0.0.1: the guesser's lockout follows
    its X-Forwarded-For, and another client behind the same proxy still logs in."""
    monkeypatch.setenv("DBACK_PLUGINS", "dback-mock")
    monkeypatch.setenv("DBACK_MOCK_PASSWORD", "sesame")
    settings = {"trusted_proxies": "127.0.0.1", "password_lockout_after": 2}
    async with running_server(**settings) as server:
        guesser = Client(server, additional_headers={"X-Forwarded-For": "198.51.100.7"})
        async with guesser:
            answers = [(await guesser.join("oauth", password=f"no{n}"))["data"] for n in range(3)]
        async with Client(server, additional_headers={"X-Forwarded-For": "198.51.100.8"}) as ok:
            joined = await ok.join("oauth", password="sesame")
        spoofer = Client(
            server,
            local_addr=("127.0.0.2", 0),
            additional_headers={"X-Forwarded-For": "198.51.100.8"},
        )
        async with spoofer:  # not a trusted proxy: counted as 127.0.0.2, not as the above
            assert (await spoofer.join("oauth", password="no"))["data"]["message"] == (
                protocol.LOGIN_REFUSED
            )
    assert [answer["message"] for answer in answers[:2]] == [protocol.LOGIN_REFUSED] * 2
    assert answers[2]["message"].startswith("Too many wrong passwords from your address")
    assert joined["type"] == "server-join"


def test_a_bad_trusted_proxy_setting_is_refused():
    with pytest.raises(SettingsError, match="DBACK_TRUSTED_PROXIES"):
        Settings.from_env({"DBACK_TRUSTED_PROXIES": "localhost"})
