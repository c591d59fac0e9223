"""The sharding and session-start settings, and the bookkeeping behind them."""

from __future__ import annotations

import pytest

from dback_discord.config import BotOptions, ConfigError, parse_config
from dback_discord.identify_pace import IdentifyPace
from dback_discord.session_starts import SessionBudget, SessionStartLimit, SessionStartsSpent


class Clock:
    """A clock the test moves by hand: the budget's reset is a day away in real time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_defaults_keep_one_connection_and_a_reserve():
    bot = BotOptions()
    assert (bot.shards, bot.session_reserve, bot.reidentify_max) == (1, 50, 300.0)


@pytest.mark.parametrize("value", [3, "auto"])
def test_shards_is_a_count_or_auto(value):
    assert parse_config("token", {"bot": {"shards": value}}).bot.shards == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, 'bot.shards: 0 is neither a number of shards (1 or more) nor "auto"'),
        ("many", "bot.shards: 'many' is neither"),
        (True, "bot.shards: True has the wrong type"),
        (1.5, "bot.shards: 1.5 has the wrong type"),
    ],
)
def test_a_wrong_shard_setting_is_named(value, message):
    with pytest.raises(ConfigError) as raised:
        parse_config("token", {"bot": {"shards": value}}, "discord.toml")
    assert message in str(raised.value)


def test_session_reserve_is_a_whole_number():
    with pytest.raises(ConfigError, match=r"bot\.session_reserve: 2\.5 has the wrong type"):
        parse_config("token", {"bot": {"session_reserve": 2.5}})


def test_the_budget_stops_at_the_reserve_and_is_whole_again_after_the_reset():
    clock = Clock()
    budget = SessionBudget(reserve=2, clock=clock)
    budget.update(
        SessionStartLimit.from_gateway(
            {"total": 10, "remaining": 4, "reset_after": 60_000, "max_concurrency": 1}
        )
    )
    budget.spend()
    budget.spend()
    clock.now = 20.0
    with pytest.raises(SessionStartsSpent) as spent:
        budget.spend()
    assert spent.value.wait == pytest.approx(40.0)
    assert budget.remaining == 2
    clock.now = 61.0
    budget.spend(3)
    assert budget.remaining == 7
    assert budget.describe() == "session starts 7/10 left today"


def test_shards_start_in_waves_of_max_concurrency():
    pace = IdentifyPace(first=5.0, ceiling=300.0, stable=60.0)
    waits = [pace.next(shard, initial=shard == 0, max_concurrency=2).delay for shard in range(5)]
    assert waits == [0.0, 0.0, 5.0, 0.0, 5.0]
