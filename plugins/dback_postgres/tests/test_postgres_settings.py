"""Settings: a missing DSN means "not configured", a bad value is an error that names it."""

from __future__ import annotations

import pytest

from dback_core.loading.plugins import FAILED, NOT_CONFIGURED, load_plugins
from dback_postgres.settings import PostgresSettings

DSN = "postgresql://dback:secret@db.internal:6543/presence"


def test_defaults_and_overrides():
    assert PostgresSettings.from_env({}) is None
    assert PostgresSettings.from_env({"DBACK_POSTGRES_DSN": "  "}) is None
    settings = PostgresSettings.from_env(
        {
            "DBACK_POSTGRES_DSN": DSN,
            "DBACK_POSTGRES_POOL_MIN": "2",
            "DBACK_POSTGRES_POOL_MAX": "20",
            "DBACK_POSTGRES_TIMEOUT": "1.5",
        }
    )
    assert (settings.pool_min, settings.pool_max, settings.timeout) == (2, 20, 1.5)
    assert (settings.retry_max, settings.chat_replay) == (1.0, 60.0)


def test_the_password_never_appears_in_log_lines():
    settings = PostgresSettings.from_env({"DBACK_POSTGRES_DSN": DSN})
    assert settings.where == "postgresql://dback@db.internal:6543/presence"
    in_query = PostgresSettings.from_env({"DBACK_POSTGRES_DSN": "postgres://u@h/db?password=x"})
    assert in_query.where == "postgresql://u@h/db"


def test_a_dsn_with_several_hosts_can_be_logged():
    """asyncpg tries each host in turn; the log line names them all, still without secrets."""
    settings = PostgresSettings.from_env(
        {"DBACK_POSTGRES_DSN": "postgresql://dback:s3cr@t@db1:5432,[::1]:5433/presence"}
    )
    assert settings.where == "postgresql://dback@db1:5432,[::1]:5433/presence"
    assert PostgresSettings.from_env({"DBACK_POSTGRES_DSN": "postgresql://[::1]/db"}) is not None


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DBACK_POSTGRES_DSN": "mysql://x@y/z"}, "must be a postgresql:// URL"),
        (
            {"DBACK_POSTGRES_DSN": "postgresql://u:pw@h:54e2/db"},
            "port that is not a number: '54e2'",
        ),
        (
            {"DBACK_POSTGRES_DSN": "postgresql://u@h1:5432,[::1]:x/db"},
            "port that is not a number: 'x'",
        ),
        (
            {"DBACK_POSTGRES_DSN": DSN, "DBACK_POSTGRES_POOL_MAX": "ten"},
            "POOL_MAX must be an integer",
        ),
        ({"DBACK_POSTGRES_DSN": DSN, "DBACK_POSTGRES_TIMEOUT": "0"}, "TIMEOUT must be at least"),
        (
            {
                "DBACK_POSTGRES_DSN": DSN,
                "DBACK_POSTGRES_POOL_MIN": "5",
                "DBACK_POSTGRES_POOL_MAX": "2",
            },
            "must not exceed",
        ),
    ],
)
def test_bad_values_are_named(environ, message):
    with pytest.raises(ValueError, match=message):
        PostgresSettings.from_env(environ)


def test_the_plugin_reports_its_state(monkeypatch):
    monkeypatch.delenv("DBACK_POSTGRES_DSN", raising=False)
    environ = {"DBACK_PLUGINS": "dback-postgres"}
    (record,) = load_plugins(environ=environ).records
    assert record.status == NOT_CONFIGURED

    monkeypatch.setenv("DBACK_POSTGRES_DSN", DSN)
    monkeypatch.setenv("DBACK_POSTGRES_POOL_MAX", "many")
    (record,) = load_plugins(environ=environ).records
    assert record.status == FAILED
    assert "DBACK_POSTGRES_POOL_MAX must be an integer" in record.error
