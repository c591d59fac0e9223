"""What counts as one client address for limits and fair shares.

An IPv4 address is one address. An IPv6 address is not: a single home or server usually gets
a whole /64 (2^64 addresses) from its provider, so counting each IPv6 address alone would
give one host an endless supply of fresh "addresses" - past the per-address connection cap,
the password-guessing backoff and every fair share. Every IPv6 address is therefore counted
as its /64 network, and an IPv4 address written as IPv6 (``::ffff:203.0.113.5``, as a
dual-stack socket reports it) as the IPv4 address it is.

Behind a reverse proxy every socket comes from the proxy: one address for all clients, so
one guesser's lockout would be everybody's. For a peer listed in ``DBACK_TRUSTED_PROXIES``
the client is the right-most address of its ``X-Forwarded-For`` that is not itself a
trusted proxy (the entries to its left are whatever the client chose to send).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from typing import Any

from dback_core.plugin.server_settings import Network

#: The prefix length one IPv6 client is counted under.
IPV6_PREFIX = 64


@functools.lru_cache(maxsize=4096)
def address_group(host: str) -> str:
    """The address ``host`` is counted under: an IPv4 address as it is, an IPv6 address as
    its /64 (``2001:db8:1:2::/64``). Anything that is not an IP address (a Unix socket's
    path, ``unknown``) is returned unchanged.

    Cached: it is asked on every password try, and a flood of tries comes from few
    addresses; parsing each anew was a twentieth of the server's work under such a flood."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


def peer_address(peername: Any) -> str:
    """The counted address of a socket's peer (``getpeername()``/``remote_address``), or
    ``unknown`` when there is none."""
    if isinstance(peername, tuple) and peername:
        return address_group(str(peername[0]))
    return "unknown"


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The counted address of the client behind socket peer ``peer`` (its host): the peer
    itself, unless it is a trusted proxy that says whom it forwards (``X-Forwarded-For``)."""
    if not trusted or not forwarded_for or not _is_trusted(peer, trusted):
        return address_group(peer)
    for entry in reversed(forwarded_for.split(",")):
        host = entry.strip()
        if not _is_trusted(host, trusted):
            return address_group(host) if _is_ip(host) else address_group(peer)
    return address_group(peer)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_trusted(host: str, trusted: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in trusted)
