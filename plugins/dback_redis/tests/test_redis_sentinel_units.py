"""The Sentinel settings: how the addresses are read, what is refused, and that no password
of the sentinels or the master ever shows in ``dback plugins``; and a failover's cut write
told apart from a lost lease."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from redis.asyncio.connection import SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import WatchError

from dback_core.ops.cli import cli
from dback_core.plugin.errors import SettingsError
from dback_redis import sentinel
from dback_redis.config import RedisConfig
from dback_redis.connection import open_client, retry_backoff
from dback_redis.election import Lease, LeaseLost
from dback_redis.publisher import Publisher
from dback_redis.snapshot import Keys

SENTINELS = "10.0.0.1:26379,10.0.0.2:26380"


def test_addresses_are_host_port_pairs_separated_by_commas_or_spaces():
    found = sentinel.parse("10.0.0.1:26379, sentinel-b [::1]:5000")
    assert found.addresses == (("10.0.0.1", 26379), ("sentinel-b", 26379), ("::1", 5000))
    assert (found.username, found.password) == (None, None)


def test_a_url_carries_the_sentinels_user_and_password():
    found = sentinel.parse("redis://watch:p@ss w:rd@10.0.0.1:26379,10.0.0.2")
    assert found.addresses == (("10.0.0.1", 26379), ("10.0.0.2", 26379))
    assert (found.username, found.password) == ("watch", "p@ss w:rd")
    again = sentinel.parse("redis://:x%40y@10.0.0.1, redis://:x%40y@10.0.0.2:1")
    assert again.password == "x@y" and len(again.addresses) == 2
    assert "x@y" not in repr(again)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("10.0.0.1:99999", "ports from 1 to 65535"),
        ("10.0.0.1/0", "host:port addresses"),
        ("redis://10.0.0.1:26379/2", "sentinels only"),
        ("rediss://10.0.0.1:26379", "host:port addresses or redis://"),
        ("redis://:a@10.0.0.1,redis://:b@10.0.0.2", "the same user and password"),
        (" , ", "at least one sentinel"),
    ],
)
def test_what_cannot_be_sentinels_is_refused_naming_the_variable(text, words):
    with pytest.raises(SettingsError, match="DBACK_REDIS_SENTINELS") as raised:
        RedisConfig.from_env({"DBACK_REDIS_SENTINELS": text})
    assert words in str(raised.value)


def test_the_url_is_optional_with_sentinels_and_names_the_master():
    config = RedisConfig.from_env(
        {"DBACK_REDIS_SENTINELS": SENTINELS, "DBACK_REDIS_SENTINEL_MASTER": "dback-main"}
    )
    assert config.url == "redis://dback-main/0"
    assert config.sentinels is not None and config.sentinels.master == "dback-main"
    assert config.describe() == (
        "role=auto url=redis://dback-main/0 sentinels=10.0.0.1:26379,10.0.0.2:26380 "
        "master=dback-main prefix=dback"
    )


def test_the_sentinel_password_comes_from_the_url_or_its_own_setting_not_two_different():
    alone = RedisConfig.from_env(
        {"DBACK_REDIS_SENTINELS": SENTINELS, "DBACK_REDIS_SENTINEL_PASSWORD": "hunter2"}
    )
    assert alone.sentinels is not None and alone.sentinels.password == "hunter2"
    with pytest.raises(SettingsError, match="DBACK_REDIS_SENTINEL_PASSWORD differs"):
        RedisConfig.from_env(
            {
                "DBACK_REDIS_SENTINELS": f"redis://:other@{SENTINELS}",
                "DBACK_REDIS_SENTINEL_PASSWORD": "hunter2",
            }
        )


def test_a_unix_socket_cannot_be_found_through_sentinels():
    with pytest.raises(SettingsError, match="DBACK_REDIS_URL must be redis://"):
        RedisConfig.from_env(
            {"DBACK_REDIS_SENTINELS": SENTINELS, "DBACK_REDIS_URL": "unix:///run/r.sock"}
        )


async def test_the_master_connections_keep_the_url_s_database_user_and_tls():
    config = RedisConfig.from_env(
        {
            "DBACK_REDIS_SENTINELS": SENTINELS,
            "DBACK_REDIS_URL": "rediss://app:hunter2@ignored:1/3?ssl_cert_reqs=none",
        }
    )
    client = open_client(config)
    try:
        options = client.connection_pool.connection_kwargs
        assert (options["db"], options["username"], options["password"]) == (3, "app", "hunter2")
        assert issubclass(client.connection_pool.connection_class, SSLConnection)
        assert "host" not in options and "port" not in options
    finally:
        await client.aclose()


def test_loops_retry_within_half_a_second_behind_sentinels():
    plain = retry_backoff(RedisConfig(url="redis://127.0.0.1/0"))
    behind = retry_backoff(RedisConfig.from_env({"DBACK_REDIS_SENTINELS": SENTINELS}))
    assert (plain.ceiling, behind.ceiling) == (5.0, sentinel.RETRY_MAX) and behind.ceiling <= 0.5


def test_dback_plugins_never_shows_a_sentinel_or_master_password(monkeypatch):
    monkeypatch.setenv("DBACK_REDIS_URL", "redis://app:master-secret@mymaster/0")
    monkeypatch.setenv("DBACK_REDIS_SENTINELS", f"redis://watch:sentinel-secret@{SENTINELS}")
    shown = CliRunner().invoke(cli, ["plugins"])
    as_json = CliRunner().invoke(cli, ["plugins", "--json"])
    for result in (shown, as_json):
        assert result.exit_code == 0, result.output
        assert "master-secret" not in result.output and "sentinel-secret" not in result.output
    assert f"sentinels={SENTINELS} master=mymaster" in shown.output
    (entry,) = [e for e in json.loads(as_json.output)["plugins"] if e["name"] == "dback-redis"]
    settings = {setting["variable"]: setting for setting in entry["settings"]}
    assert settings["DBACK_REDIS_SENTINELS"]["value"] == f"redis://watch:***@{SENTINELS}"
    assert settings["DBACK_REDIS_SENTINELS"]["url"] is True

    monkeypatch.setenv("DBACK_REDIS_SENTINELS", SENTINELS)
    monkeypatch.setenv("DBACK_REDIS_SENTINEL_PASSWORD", "sentinel-secret")
    as_json = CliRunner().invoke(cli, ["plugins", "--json"])
    assert as_json.exit_code == 0 and "sentinel-secret" not in as_json.output
    (entry,) = [e for e in json.loads(as_json.output)["plugins"] if e["name"] == "dback-redis"]
    settings = {setting["variable"]: setting for setting in entry["settings"]}
    assert settings["DBACK_REDIS_SENTINEL_PASSWORD"]["value"] == "***"
    assert settings["DBACK_REDIS_SENTINEL_PASSWORD"]["secret"] is True


@pytest.mark.redis
async def test_a_guarded_write_cut_by_a_failover_is_retried_unless_the_lease_moved(namespace):
    """redis-py raises ``WatchError`` when the connection of a WATCHing transaction dies (a
    failover): with the lease still this process's, that is a lost connection, to retry."""
    config = RedisConfig(url=await namespace.new_user("pub"), prefix=namespace.prefix)
    publisher = Publisher(config)
    publisher.lease = Lease(publisher.redis, Keys(config.prefix), "me", 10)
    try:
        assert await publisher.lease.acquire() is not None
        with pytest.raises(RedisConnectionError, match="connection was lost during a write"):
            async with publisher._transaction():
                raise WatchError("A ConnectionError occurred while watching")
        with pytest.raises(LeaseLost, match="changed hands during a write"):
            async with publisher._transaction():
                await namespace.admin.set(f"{namespace.prefix}:lease", "another")
                raise WatchError("Watched variable changed.")
    finally:
        await publisher.redis.aclose()
