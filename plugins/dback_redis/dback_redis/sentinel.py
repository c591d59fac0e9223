"""Redis behind Sentinel: where the sentinels are, and a client that follows the master.

With ``DBACK_REDIS_SENTINELS`` set, no process is told where the master is: each asks the
sentinels (redis-py's ``Sentinel``) whenever it opens a connection, so after a failover its
next connection reaches the replica that was promoted. The master connections keep what
``DBACK_REDIS_URL`` says besides the address - database, user, password, TLS (``rediss://``)
- while the sentinels have their own password (Redis Sentinel's ``requirepass``).

The client itself never retries a command: every loop of the plugin retries on its own, with
a short delay while sentinels are used (``RETRY_MAX``), and resynchronises after it
reconnects. A command the client repeated after a lost connection could be a chat message
published twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection
from redis.asyncio.connection import parse_url as redis_reads
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from dback_core.plugin.credentials import parse_url

#: The port of a sentinel address written without one (Redis Sentinel's default).
DEFAULT_PORT = 26379
#: The master name Redis Sentinel's example configuration uses.
DEFAULT_MASTER = "mymaster"
#: The longest wait for one sentinel (connecting or answering) before asking the next: a
#: sentinel is asked at every new connection, so a dead one must cost little.
SENTINEL_TIMEOUT = 1.0
#: The longest delay between two attempts of a plugin loop while sentinels are used: a
#: failover takes seconds, and every second of extra delay is a second without events.
RETRY_MAX = 0.5

#: Where a second URL of a value starts: a scheme after commas or spaces.
_NEXT_URL = re.compile(r"[,\s]+(?=[A-Za-z][A-Za-z0-9+.-]*://)")
#: ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``.
_ADDRESS = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.%]+)\]|(?P<host>[^\s,:\[\]/@]+))(?::(?P<port>\d+))?"
)


@dataclass(frozen=True)
class Sentinels:
    """The sentinels to ask, the name of the master they watch, and their credentials."""

    addresses: tuple[tuple[str, int], ...]
    master: str = DEFAULT_MASTER
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        """The addresses and master name, for ``dback plugins`` (never the password)."""
        shown = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.addresses)
        return f"sentinels={shown} master={self.master}"


def parse(text: str) -> Sentinels:
    """The sentinels written in ``text``: ``host:port`` addresses separated by commas or
    spaces, or a URL ``redis://[user:password@]host:port,host:port`` whose user-info is the
    sentinels' (several such URLs must agree on it). ``ValueError("must ...")`` otherwise."""
    text = text.strip()
    if parse_url(text) is None:
        return Sentinels(_addresses(text))
    addresses: list[tuple[str, int]] = []
    credentials: set[tuple[str | None, str | None]] = set()
    for chunk in _NEXT_URL.split(text):
        url = parse_url(chunk.strip().rstrip(","))
        if url is None or url.scheme != "redis":
            raise ValueError("must be host:port addresses or redis://[user:password@]host:port,...")
        if url.path.strip("/") or url.query:
            raise ValueError("must name the sentinels only (the master's database goes in the URL)")
        addresses += _addresses(url.hosts)
        credentials.add((url.user_value, url.password_value))
    if len(credentials) > 1:
        raise ValueError("must give every sentinel the same user and password")
    ((username, password),) = credentials
    return Sentinels(tuple(addresses), username=username or None, password=password)


def _addresses(text: str) -> tuple[tuple[str, int], ...]:
    found: list[tuple[str, int]] = []
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        match = _ADDRESS.fullmatch(part)
        if match is None:
            raise ValueError(f"must be host:port addresses, got {part!r}")
        port = int(match["port"]) if match["port"] else DEFAULT_PORT
        if not 0 < port < 65536:
            raise ValueError(f"must have ports from 1 to 65535, got {part!r}")
        found.append((match["v6"] or match["host"], port))
    if not found:
        raise ValueError("must name at least one sentinel")
    return tuple(found)


def check(text: str) -> None:
    """The settings check of ``DBACK_REDIS_SENTINELS``."""
    parse(text)


def master_options(url: str) -> dict[str, Any]:
    """What the master's connections take from ``url`` (without its password): database,
    user and TLS settings; its host and port are the sentinels' to say."""
    options: dict[str, Any] = dict(redis_reads(url))
    for name in ("host", "port", "path"):
        options.pop(name, None)
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return options


class TerseSentinel(Sentinel):
    """redis-py's ``Sentinel`` whose ``MasterNotFoundError`` says in one line what went
    wrong - sentinels unreachable, or answering without a master that is up - instead of
    quoting each sentinel's client with all its settings."""

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        unreachable: list[str] = []
        answered = 0
        for index, client in enumerate(self.sentinels):
            try:
                masters: Any = await client.sentinel_masters()
            except (ConnectionError, ResponseError, TimeoutError) as error:
                unreachable.append(str(error) or type(error).__name__)
                continue
            answered += 1
            state = masters.get(service_name)
            if state and self.check_master_state(state, service_name):
                # The one that knew is asked first next time (as redis-py does).
                self.sentinels[0], self.sentinels[index] = client, self.sentinels[0]
                return state["ip"], int(state["port"])
        found = []
        if answered:
            found.append(f"{answered} of {len(self.sentinels)} sentinels know no master that is up")
        if unreachable:
            found.append(
                f"{len(unreachable)} of {len(self.sentinels)} sentinels unreachable "
                f"({unreachable[0]})"
            )
        raise MasterNotFoundError(f"No master found for {service_name!r}: {'; '.join(found)}")


class SentinelRedis(Redis):
    """The master's client; closing it also closes its connections to the sentinels."""

    sentinels: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinels is not None:
            await self.sentinels.aclose()


def master_client(
    sentinels: Sentinels, url: str, password: str | None, **options: Any
) -> SentinelRedis:
    """A client of whichever server the sentinels name as ``sentinels.master``: ``url``
    (without its password, given apart) and ``options`` configure its connections."""
    sentinel_options: dict[str, Any] = {
        "socket_connect_timeout": SENTINEL_TIMEOUT,
        "socket_timeout": SENTINEL_TIMEOUT,
        "decode_responses": True,
    }
    if sentinels.username:
        sentinel_options["username"] = sentinels.username
    if sentinels.password:
        sentinel_options["password"] = sentinels.password
    sentinel = TerseSentinel(list(sentinels.addresses), sentinel_kwargs=sentinel_options)
    client: SentinelRedis = sentinel.master_for(
        sentinels.master,
        redis_class=SentinelRedis,
        password=password,
        retry=Retry(NoBackoff(), 0),
        **master_options(url),
        **options,
    )
    client.sentinels = sentinel
    return client
