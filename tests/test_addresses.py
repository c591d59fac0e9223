"""One client address for limits and fair shares: an IPv4 address, or an IPv6 /64."""

from __future__ import annotations

import pytest

from dback_core.addresses import address_group, peer_address
from dback_core.testing import Client, running_server


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
