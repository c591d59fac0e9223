"""The bus codec, the settings, the role selection and what ``dback plugins`` shows."""

from __future__ import annotations

import inspect
import json
import time

import pytest
from click.testing import CliRunner

from dback_core import NotConfigured
from dback_core.ops.cli import cli
from dback_core.plugin.events import ClientIdUpdate, Message, Presence, Refresh
from dback_redis.chat import MESSAGE_FIELD, TIME_FIELD, ChatLimits, Replay
from dback_redis.codec import BadMessage, decode, encode, encode_released
from dback_redis.config import RedisConfig, redacted
from dback_redis.edge import Edge
from dback_redis.plugin import EdgePlugin, PublisherPlugin, RedisPlugin
from dback_redis.publisher import Publisher

EVENTS = [
    Presence("1", "5", "idle", "five", "#112233"),
    Presence("1", "5", "online", None, False),
    Presence("1", "5", "offline", None, None, delete=True),
    Message("1", "5", "hello", "general"),
    Message("1", "5", "from a table", "general", source="dback-postgres", position=42),
    ClientIdUpdate("1", "4242"),
    Refresh("1"),
    Refresh(None),
    None,
]


@pytest.mark.parametrize("event", EVENTS)
def test_every_event_survives_the_bus(event):
    envelope = decode(encode(event, "proc", 7))
    assert (envelope.sender, envelope.seq, envelope.event) == ("proc", 7, event)


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        json.dumps({"v": 2, "from": "p", "seq": 1, "kind": "resync"}),
        json.dumps({"v": 1, "from": "p", "seq": "1", "kind": "resync"}),
        json.dumps({"v": 1, "from": "p", "seq": True, "kind": "resync"}),
        json.dumps({"v": 1, "from": 3, "seq": 1, "kind": "resync"}),
        json.dumps({"v": 1, "from": "p", "seq": 1, "kind": "teleport"}),
        json.dumps({"v": 1, "from": "p", "seq": 1, "kind": "presence", "server_id": "1"}),
        json.dumps(
            {
                "v": 1,
                "from": "p",
                "seq": 1,
                "kind": "presence",
                "server_id": "1",
                "uid": "5",
                "status": "online",
                "role_color": 5,
            }
        ),
        json.dumps({"v": 1, "from": "p", "seq": 1, "kind": "client_id", "server_id": None}),
        json.dumps(
            {
                "v": 1,
                "from": "p",
                "seq": 1,
                "kind": "message",
                "server_id": "1",
                "uid": "5",
                "message": "hi",
                "position": "42",
            }
        ),
    ],
)
def test_malformed_bus_messages_are_rejected_clearly(raw):
    with pytest.raises(BadMessage):
        decode(raw)


def test_the_released_notice_is_outside_every_sequence():
    envelope = decode(encode_released("proc", 7))
    assert (envelope.sender, envelope.seq, envelope.fence, envelope.released) == (
        "proc",
        0,
        7,
        True,
    )
    assert envelope.event is None


def test_missed_chat_too_old_to_replay_is_counted_not_shown():
    replay = Replay("me", ChatLimits(history=100, replay_seconds=60.0))
    replay.saw("pub", 1)
    now = time.time()

    def entry(seq: int, sent_at: float, sender: str = "pub") -> tuple[str, dict[str, str]]:
        raw = encode(Message("1", "5", f"m{seq}"), sender, seq)
        return (f"{seq}-0", {MESSAGE_FIELD: raw, TIME_FIELD: f"{sent_at:.3f}"})

    entries = [
        entry(1, now - 120),  # seen already
        entry(2, now - 120),  # missed, too old
        entry(3, now - 90),  # missed, too old
        entry(4, now - 5),  # missed, replayed
        entry(9, now - 3600, "stranger"),  # before this process started: history
    ]
    replayed = [envelope.seq for envelope in replay._unseen(entries)]
    assert replayed == [4]
    assert replay.take_too_old() == 2
    assert replay.take_too_old() == 0


def test_an_unset_url_means_not_configured():
    with pytest.raises(NotConfigured, match="DBACK_REDIS_URL"):
        RedisConfig.from_env({})


def test_settings_are_read_and_checked():
    config = RedisConfig.from_env({"DBACK_REDIS_URL": "redis://127.0.0.1:6379/2"})
    assert (config.role, config.prefix, config.lease_seconds) == ("auto", "dback", 4.0)
    assert config.chat.history == 1000 and config.chat.replay_seconds == 60.0
    config = RedisConfig.from_env(
        {
            "DBACK_REDIS_URL": "redis://127.0.0.1:6379/2",
            "DBACK_REDIS_ROLE": " Publisher ",
            "DBACK_REDIS_PREFIX": "zone",
        }
    )
    assert (config.role, config.prefix) == ("publisher", "zone")
    with pytest.raises(ValueError, match="DBACK_REDIS_ROLE"):
        RedisConfig.from_env({"DBACK_REDIS_URL": "redis://x", "DBACK_REDIS_ROLE": "leader"})
    with pytest.raises(ValueError, match="redis://"):
        RedisConfig.from_env({"DBACK_REDIS_URL": "http://127.0.0.1:6379"})
    base = {"DBACK_REDIS_URL": "redis://x"}
    for name, value in [
        ("DBACK_REDIS_LEASE_SECONDS", "0.5"),
        ("DBACK_REDIS_LEASE_SECONDS", "soon"),
        ("DBACK_REDIS_CHAT_HISTORY", "0"),
        ("DBACK_REDIS_CHAT_HISTORY", "1.5"),
        ("DBACK_REDIS_CHAT_REPLAY_SECONDS", "-1"),
        ("DBACK_REDIS_CHAT_REPLAY_SECONDS", "inf"),
    ]:
        with pytest.raises(ValueError, match=name):
            RedisConfig.from_env({**base, name: value})


def test_passwords_never_leave_the_process():
    assert redacted("redis://u:hunter2@127.0.0.1:6379/0") == "redis://u:***@127.0.0.1:6379/0"
    assert redacted("redis://:hunter2@[::1]/0") == "redis://:***@[::1]/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_passwords_in_the_query_string_are_masked_too():
    """redis-py reads ``?password=`` (the usual way for unix sockets) like the user-info."""
    assert (
        redacted("unix:///run/redis.sock?db=2&password=hunter2")
        == "unix:///run/redis.sock?db=2&password=***"
    )
    assert (
        redacted("rediss://u:hunter2@host:6380/0?ssl_password=hunter3&ssl_cert_reqs=none")
        == "rediss://u:***@host:6380/0?ssl_password=***&ssl_cert_reqs=none"
    )
    config = RedisConfig.from_env({"DBACK_REDIS_URL": "unix:///run/r.sock?password=hunter2"})
    assert "hunter2" not in config.describe()


def test_the_role_selects_the_plugin_class_and_its_hooks():
    publisher = RedisPlugin(RedisConfig(url="redis://127.0.0.1", role="publisher"))
    edge = RedisPlugin(RedisConfig(url="redis://127.0.0.1", role="edge"))
    assert isinstance(publisher, PublisherPlugin) and isinstance(edge, EdgePlugin)
    # The publisher leaves the data hooks to the providers; the edge takes them over. Both
    # observe applied events: the publisher all of them, the edge its own API's.
    assert not hasattr(publisher, "get_user_data") and hasattr(publisher, "event_applied")
    assert hasattr(edge, "get_user_data") and hasattr(edge, "event_applied")


def test_dback_plugins_shows_role_and_url_without_the_password(monkeypatch):
    monkeypatch.setenv("DBACK_REDIS_URL", "redis://app:hunter2@127.0.0.1:6379/0")
    monkeypatch.setenv("DBACK_REDIS_ROLE", "publisher")
    monkeypatch.setenv("DBACK_REDIS_PREFIX", "zone")
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "role=publisher url=redis://app:***@127.0.0.1:6379/0 prefix=zone" in result.output
    assert "hunter2" not in result.output


def test_dback_plugins_says_what_is_missing(monkeypatch):
    monkeypatch.delenv("DBACK_REDIS_URL", raising=False)
    result = CliRunner().invoke(cli, ["plugins"])
    assert "dback-redis 0.1.0: not configured (set DBACK_REDIS_URL" in result.output


@pytest.mark.parametrize("role", [Edge, Publisher])
def test_every_role_starts_the_same_way_awaited(role):
    """The elected process awaits the start of whichever role it holds, and the publisher
    plugin awaits its own: a ``start`` that returned None could not be awaited."""
    assert inspect.iscoroutinefunction(role.start)
    assert inspect.iscoroutinefunction(PublisherPlugin.startup)
