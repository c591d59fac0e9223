"""The TOML configuration: what it accepts, and the clear errors for what it does not."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from dback_core import NotConfigured
from dback_core.loading.plugins import FAILED, load_plugins
from dback_discord.config import (
    ConfigError,
    GuildOptions,
    LoginLimits,
    load_config,
    parse_config,
)
from dback_discord.records import short_id

EXAMPLE = """
[bot]
guild_ready_timeout = 1

[defaults]
ignore_bots = true
hide_offline = true

[guilds.111111111111111111]
alias = "The Lounge"
short_id = "lounge"
default = true
discord_login = true
client_id = 778899
ignore_users = [1002, "1003"]
listen_channels = [501]

[guilds.222222222222222222]
password = "sesame"
hide_offline = false
ignore_channels = [601]
"""


def write(tmp_path, monkeypatch, text: str) -> None:
    path = tmp_path / "discord.toml"
    path.write_text(text)
    monkeypatch.setenv("DBACK_DISCORD_TOKEN", "token")
    monkeypatch.setenv("DBACK_DISCORD_CONFIG", str(path))


def test_guild_tables_override_the_defaults(tmp_path, monkeypatch):
    write(tmp_path, monkeypatch, EXAMPLE)
    config = load_config()
    lounge, workshop = config.guild(111111111111111111), config.guild(222222222222222222)
    assert config.bot.guild_ready_timeout == 1 and config.bot.reidentify_delay == 5.0
    assert lounge.alias == "The Lounge" and lounge.short_id == "lounge" and lounge.default
    assert lounge.passworded and lounge.client_id == "778899"
    assert lounge.ignore_users == {1002, 1003} and lounge.listen_channels == {501}
    assert lounge.ignore_bots and lounge.hide_offline
    assert workshop.password == "sesame" and workshop.passworded and not workshop.discord_login
    assert workshop.ignore_bots and not workshop.hide_offline
    assert config.guild(333) == config.defaults and config.defaults.ignore_bots


def test_login_limits_have_safe_defaults_and_can_be_set():
    assert parse_config("token", {}).login == LoginLimits(
        rate=2.0,
        burst=5,
        concurrency=4,
        per_address=2,
        wait=3.0,
        admit_ttl=300.0,
        refuse_ttl=3600.0,
        cache_size=10_000,
    )
    login = parse_config("token", {"login": {"rate": 0.5, "refuse_ttl": 60}}).login
    assert login.rate == 0.5 and login.refuse_ttl == 60 and login.burst == 5


def test_channels_may_be_named_as_well_as_numbered():
    document = {"guilds": {"1": {"ignore_channels": [501, "602", "#Off-Topic", " memes "]}}}
    options = parse_config("token", document).guild(1)
    assert options.ignore_channels == {501, 602, "off-topic", "memes"}
    assert options.hears_channel({"general", 1}) and not options.hears_channel({"off-topic"})


def test_what_is_published_is_set_per_guild():
    document = {
        "defaults": {"chat_delay": 2},
        "guilds": {
            "1": {"publish_channels": ["#Staff", 601], "chat_delay": 0.5},
            "2": {"discord_login": True, "readers_role": "301"},
        },
    }
    config = parse_config("token", document)
    assert config.guild(1).publish_channels == {"staff", 601}
    assert config.guild(1).chat_delay == 0.5 and config.guild(1).readers_role is None
    assert config.guild(2).readers_role == 301 and config.guild(2).chat_delay == 2
    assert config.guild(3).publish_channels == frozenset() and config.guild(3).chat_delay == 2
    assert GuildOptions().chat_delay == 0 and GuildOptions().readers_role is None


def test_without_a_file_every_guild_gets_the_defaults(monkeypatch):
    monkeypatch.setenv("DBACK_DISCORD_TOKEN", "token")
    monkeypatch.delenv("DBACK_DISCORD_CONFIG", raising=False)
    assert load_config().guild(1) == GuildOptions()


def test_the_token_is_required_and_never_shown(monkeypatch):
    monkeypatch.delenv("DBACK_DISCORD_TOKEN", raising=False)
    with pytest.raises(NotConfigured, match="DBACK_DISCORD_TOKEN"):
        load_config()
    assert "secret-token" not in repr(parse_config("secret-token", {}))


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"guilds": {"lounge": {}}}, "guilds.lounge: 'lounge' is not a Discord id"),
        ({"guilds": {"1": {"hide_ofline": True}}}, "unknown key 'hide_ofline'"),
        ({"guilds": {"1": {"hide_offline": "yes"}}}, "guilds.1.hide_offline: 'yes' has the wrong"),
        ({"guilds": {"1": {"ignore_users": ["bob"]}}}, "guilds.1.ignore_users: 'bob' is not"),
        ({"guilds": {"1": {"alias": True}}}, "guilds.1.alias: True has the wrong type"),
        ({"bot": {"reidentify_delay": -1}}, "bot.reidentify_delay: must not be negative"),
        ({"servers": {}}, "unknown table(s) servers"),
        ({"guilds": []}, "guilds must be a table"),
        (
            {"guilds": {"1": {"short_id": "a"}, "2": {"short_id": "a"}}},
            "short_id 'a' is used by both guilds.1 and guilds.2",
        ),
        (
            {"guilds": {"1": {"default": True}, "2": {"default": True}}},
            "more than one default guild: guilds.1 and guilds.2",
        ),
        ({"defaults": {"short_id": "x"}}, "defaults.short_id: names one guild"),
        ({"defaults": {"default": True}}, "defaults.default: names one guild"),
        ({"guilds": {"1": {"listen_channels": ["#"]}}}, "neither a channel id nor a name"),
        ({"login": {"rate": 0}}, "login.rate: must be above 0"),
        ({"login": {"burst": 1.5}}, "login.burst: 1.5 has the wrong type"),
        ({"defaults": {"publish_channels": [5]}}, "defaults.publish_channels: a channel"),
        ({"defaults": {"readers_role": 5}}, "defaults.readers_role: names one guild"),
        ({"guilds": {"1": {"readers_role": 5}}}, "guilds.1.readers_role: needs discord_login"),
        ({"guilds": {"1": {"readers_role": "mods"}}}, "readers_role: 'mods' is not a Discord"),
        ({"guilds": {"1": {"chat_delay": -1}}}, "guilds.1.chat_delay: must be between 0 and 60"),
        ({"guilds": {"1": {"chat_delay": 61}}}, "guilds.1.chat_delay: must be between 0 and 60"),
        ({"guilds": {"1": {"chat_delay": True}}}, "guilds.1.chat_delay: True has the wrong type"),
    ],
)
def test_mistakes_are_named(document, message):
    with pytest.raises(ConfigError) as raised:
        parse_config("token", document, "discord.toml")
    assert message in str(raised.value)
    assert str(raised.value).startswith("DBACK_DISCORD_CONFIG is not usable: discord.toml")


def test_unreadable_or_invalid_files_are_named(tmp_path, monkeypatch):
    write(tmp_path, monkeypatch, "[guilds\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config()
    monkeypatch.setenv("DBACK_DISCORD_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read"):
        load_config()


def test_a_broken_file_fails_the_plugin_with_the_reason(tmp_path, monkeypatch):
    write(tmp_path, monkeypatch, "[guilds.1]\ncolour = 1\n")
    (record,) = load_plugins(environ={"DBACK_PLUGINS": "dback-discord"}).records
    assert record.status == FAILED
    assert "unknown key 'colour'" in record.error


def test_short_ids_depend_only_on_the_snowflake():
    assert short_id(111111111111111111, GuildOptions()) == "245cz9pz"
    assert short_id(222222222222222222, GuildOptions()) != "245cz9pz"
    assert short_id(111111111111111111, GuildOptions(short_id="lounge")) == "lounge"


def test_every_example_in_the_readme_is_a_valid_configuration():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    examples = re.findall(r"```toml\n(.*?)```", readme, re.S)
    assert len(examples) >= 4
    for example in examples:
        parse_config("token", tomllib.loads(example), "README.md")
