"""Configuration mistakes, as users make them: the real ``dback serve`` stops and names them.

Every test starts the installed ``dback`` command in a subprocess with a clean environment
(no ``DBACK_*`` variable but those the test sets) and checks its exit status and output.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.http_get import get_content
from tests.support.installed_plugins import install_plugin

BIN = Path(sys.executable).parent
INSTALLED = "installed: dback-discord, dback-mock, dback-postgres, dback-redis"


def clean_env(**settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DBACK_")}
    return {**env, **settings}


def dback(*args: str, **settings: str) -> subprocess.CompletedProcess:
    """Run ``dback`` to completion: these mistakes must stop it before it serves."""
    return subprocess.run(
        [str(BIN / "dback"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(**settings),
    )


def assert_refused(result: subprocess.CompletedProcess, *expected: str) -> str:
    """A non-zero exit with one ``Error:`` line holding every ``expected`` text, no trace."""
    assert result.returncode != 0, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    for text in expected:
        assert text in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert "serving" not in result.stderr
    return errors[0]


def test_a_misspelled_plugin_is_named_with_a_suggestion_and_the_installed_ones():
    result = dback("serve", "--port", "0", DBACK_PLUGINS="dback-postgre")
    line = assert_refused(result, "dback-postgre", "did you mean 'dback-postgres'?", INSTALLED)
    assert "DBACK_PLUGINS" in line


def test_a_named_plugin_without_its_settings_names_the_missing_variable():
    result = dback("serve", "--port", "0", DBACK_PLUGINS="dback-postgres")
    assert_refused(result, "dback-postgres", "not configured", "set DBACK_POSTGRES_DSN")


def test_a_named_plugin_that_fails_to_import_is_named_with_the_reason(tmp_path):
    install_plugin(tmp_path, "tp-broken", "import no_such_module_here\n")
    result = dback("serve", "--port", "0", DBACK_PLUGINS="tp-broken", PYTHONPATH=str(tmp_path))
    assert_refused(result, "tp-broken", "ModuleNotFoundError", "no_such_module_here")


@pytest.mark.slow
def test_a_broken_plugin_loaded_by_default_is_logged_and_skipped(tmp_path):
    """Not named by the operator: reported as an ERROR, and the others serve."""
    install_plugin(tmp_path, "tp-broken", "import no_such_module_here\n")
    with Serving(DBACK_MOCK_INTERVAL="0.05", PYTHONPATH=str(tmp_path)) as server:
        pass
    assert (
        "ERROR dback_core.loading.plugins: plugin tp-broken failed to load and is skipped"
        in server.log
    )
    assert "serving 4 guilds" in server.log


@pytest.mark.slow
@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"DBACK_MOCK_INTERVAL": "fast"}, "DBACK_MOCK_INTERVAL must be a number, got 'fast'"),
        ({"DBACK_MOCK_SEED": "seven"}, "DBACK_MOCK_SEED must be an integer"),
        (
            {"DBACK_POSTGRES_DSN": "mysql://root@127.0.0.1/dback"},
            "DBACK_POSTGRES_DSN must be a postgresql:// URL",
        ),
        (
            {"DBACK_REDIS_URL": "redis://127.0.0.1:6379/0", "DBACK_REDIS_ROLE": "boss"},
            "DBACK_REDIS_ROLE must be one of 'auto', 'publisher', 'edge'",
        ),
        ({"DBACK_MAX_FRAME_SIZE": "big"}, "DBACK_MAX_FRAME_SIZE must be an integer, got 'big'"),
        ({"DBACK_PING_INTERVAL": "-1"}, "DBACK_PING_INTERVAL must be at least 0, got '-1'"),
        ({"DBACK_COMPRESSION": "zip"}, "DBACK_COMPRESSION must be one of 'none', 'deflate'"),
    ],
)
def test_a_bad_value_loaded_by_default_stops_serve_naming_the_variable(settings, expected):
    """No DBACK_PLUGINS: every installed plugin loads by default, and a wrong value still
    stops the server instead of quietly taking the plugin (or the world) away."""
    assert_refused(dback("serve", "--port", "0", **settings), expected)


def test_a_bad_value_of_a_named_plugin_stops_serve():
    result = dback(
        "serve",
        "--port",
        "0",
        DBACK_PLUGINS="dback-postgres",
        DBACK_POSTGRES_DSN="postgresql://postgres@127.0.0.1:5432/dback",
        DBACK_POSTGRES_POOL_MAX="many",
    )
    assert_refused(result, "dback-postgres", "DBACK_POSTGRES_POOL_MAX must be an integer")


@pytest.mark.slow
def test_a_discord_config_file_with_a_mistake_stops_serve(tmp_path):
    config = tmp_path / "discord.toml"
    config.write_text("[guilds.1]\ncolour = 1\n")
    result = dback(
        "serve",
        "--port",
        "0",
        DBACK_DISCORD_TOKEN="not-a-real-token",
        DBACK_DISCORD_CONFIG=str(config),
    )
    assert_refused(result, "DBACK_DISCORD_CONFIG is not usable", "unknown key 'colour'")


def test_a_settings_error_from_startup_stops_serve(tmp_path):
    install_plugin(
        tmp_path,
        "tp-late",
        """
        from dback_core import SettingsError, hookimpl

        @hookimpl
        def startup():
            raise SettingsError("TP_LATE_MODE", "must be 'a' or 'b', got 'c'")
        """,
    )
    result = dback("serve", "--port", "0", DBACK_PLUGINS="tp-late", PYTHONPATH=str(tmp_path))
    assert result.returncode != 0, result.stderr
    assert "Error: plugin tp-late: TP_LATE_MODE must be 'a' or 'b', got 'c'" in result.stderr


def test_a_named_plugin_that_finds_itself_unconfigured_at_startup_stops_serve(tmp_path):
    install_plugin(
        tmp_path,
        "tp-unset",
        """
        from dback_core import NotConfigured, hookimpl

        @hookimpl
        def startup():
            raise NotConfigured("set TP_UNSET_URL")
        """,
    )
    result = dback("serve", "--port", "0", DBACK_PLUGINS="tp-unset", PYTHONPATH=str(tmp_path))
    assert result.returncode != 0, result.stderr
    assert (
        "Error: plugin tp-unset named in DBACK_PLUGINS is not configured: set TP_UNSET_URL"
        in result.stderr
    )


@pytest.mark.slow
def test_a_bad_port_in_the_environment_blames_the_variable():
    line = assert_refused(dback("serve", DBACK_PORT="abc"), "DBACK_PORT=abc", "'abc'")
    assert "--port" not in line


@pytest.mark.slow
def test_a_bad_port_on_the_command_line_blames_the_option():
    line = assert_refused(dback("serve", "--port", "70000"), "--port", "70000")
    assert "DBACK_PORT" not in line


@pytest.mark.slow
def test_a_bad_static_dir_in_the_environment_blames_the_variable(tmp_path):
    missing = tmp_path / "nowhere"
    assert_refused(dback("serve", DBACK_STATIC_DIR=str(missing)), f"DBACK_STATIC_DIR={missing}")


@pytest.mark.slow
def test_a_static_dir_without_a_built_front_end_is_refused_naming_what_is_missing(tmp_path):
    checkout = tmp_path / "d-zone"
    (checkout / "dist").mkdir(parents=True)
    line = assert_refused(
        dback("serve", "--port", "0", "--static-dir", str(checkout / "dist")),
        "--static-dir",
        f"{checkout / 'dist'} has no index.html",
        "docs/deployment.md#the-d-zone-client",
    )
    assert "did you mean" not in line
    # The checkout's root instead of its build folder: the folder with the index.html is named.
    (checkout / "dist" / "index.html").write_text('<script src="static/bundle.js"></script>')
    assert_refused(
        dback("serve", "--port", "0", DBACK_STATIC_DIR=str(checkout)),
        f"DBACK_STATIC_DIR={checkout}",
        f"(did you mean {checkout / 'dist'}?)",
    )
    # Cloned but not built: the page would load a bundle that is not there.
    assert_refused(
        dback("serve", "--port", "0", "--static-dir", str(checkout / "dist")),
        "loads static/bundle.js, which",
        "the front end is not built yet",
    )


@pytest.mark.slow
def test_a_built_front_end_is_served(tmp_path):
    """The same folder once built: ``dback serve`` starts and serves its index.html."""
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "bundle.js").write_text("// built\n")
    (tmp_path / "index.html").write_text('<title>D-Zone</title><script src="static/bundle.js">')
    with Serving("--static-dir", str(tmp_path), DBACK_PLUGINS="dback-mock") as server:
        status, body = get_content(server.port, "/")
    assert status == 200
    assert "<title>D-Zone</title>" in body
    assert server.process.returncode == 0, server.log


@pytest.mark.slow
def test_strict_mode_stops_any_command_on_any_plugin_failure(tmp_path):
    install_plugin(tmp_path, "tp-broken", "import no_such_module_here\n")
    result = dback("plugins", DBACK_STRICT_PLUGINS="1", PYTHONPATH=str(tmp_path))
    assert result.returncode != 0
    assert "tp-broken" in result.stderr and "no_such_module_here" in result.stderr


def test_plugin_lists_may_be_separated_by_spaces_as_well_as_commas():
    result = dback("plugins", "--json", DBACK_PLUGINS=" dback-mock  dback-redis,dback-discord ")
    assert result.returncode == 0, result.stderr
    description = json.loads(result.stdout)
    assert description["order"] == ["dback-mock"]
    statuses = {entry["name"]: entry["status"] for entry in description["plugins"]}
    assert statuses["dback-redis"] == statuses["dback-discord"] == "not configured"
    assert statuses["dback-postgres"] == "not selected"
    disabled = dback("plugins", "--json", DBACK_DISABLE_PLUGINS="dback-postgres dback-redis")
    statuses = {e["name"]: e["status"] for e in json.loads(disabled.stdout)["plugins"]}
    assert statuses["dback-postgres"] == statuses["dback-redis"] == "disabled"


def test_the_plugins_command_still_lists_a_mistake_instead_of_stopping():
    result = dback("plugins", DBACK_PLUGINS="dback-postgre,dback-mock")
    assert result.returncode == 0, result.stderr
    assert "dback-postgre : failed (no installed plugin is named 'dback-postgre'" in result.stdout


class Serving:
    """A ``dback serve --port 0`` subprocess, read until it serves, stopped with SIGTERM.

    ``log`` holds everything it wrote to stderr once the block ends.
    """

    def __init__(self, *arguments: str, **settings: str) -> None:
        self.arguments = arguments
        self.settings = settings
        self.lines: list[str] = []
        self.log = ""
        self.port = 0

    def __enter__(self) -> Serving:
        self.process = subprocess.Popen(
            [str(BIN / "dback"), "serve", "--port", "0", *self.arguments],
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(**self.settings),
        )
        for line in self.process.stderr:
            self.lines.append(line)
            found = re.search(r"serving \d+ guilds on ws://[\d.]+:(\d+)", line)
            if found:
                self.port = int(found[1])
                return self
        self.process.wait(timeout=10)
        raise AssertionError("dback serve exited early:\n" + "".join(self.lines))

    def __exit__(self, *exc_info: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        finally:
            self.process.kill()
        # Not communicate(): with a timeout it reads the pipe itself, missing what the
        # line iterator above has already buffered.
        self.log = "".join(self.lines) + self.process.stderr.read()


@pytest.mark.slow
def test_a_disabled_name_matching_no_plugin_warns_once_with_a_suggestion():
    with Serving(DBACK_DISABLE_PLUGINS="dback-mok", DBACK_MOCK_INTERVAL="0.05") as server:
        pass
    warnings = [line for line in server.log.splitlines() if "dback-mok" in line]
    assert len(warnings) == 1, server.log
    assert "WARNING" in warnings[0]
    assert "did you mean 'dback-mock'?" in warnings[0] and INSTALLED in warnings[0]


@pytest.mark.slow
def test_not_configured_plugins_are_logged_at_info_when_loaded_by_default():
    with Serving(DBACK_MOCK_INTERVAL="0.05") as server:
        pass
    assert (
        "INFO dback_core.loading.plugins: plugin dback-postgres is not configured: "
        "set DBACK_POSTGRES_DSN" in server.log
    )
    assert "serving 4 guilds" in server.log
    assert "serving 0 guilds" not in server.log


@pytest.mark.slow
def test_serving_no_guilds_warns_with_the_active_plugins_and_what_to_set():
    with Serving(DBACK_DISABLE_PLUGINS="dback-mock") as server:
        pass
    (warning,) = [line for line in server.log.splitlines() if "serving 0 guilds:" in line]
    assert "WARNING" in warning
    assert "active plugins: none" in warning
    assert "set DBACK_DISCORD_TOKEN" in warning and "set DBACK_POSTGRES_DSN" in warning
    assert warning.endswith("then restart dback (see 'dback plugins')")  # settings: read at start


def silent_client(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads or answers."""
    client = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    client.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += client.recv(1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return client


@pytest.mark.slow
def test_a_second_signal_ends_a_shutdown_that_waits_for_a_silent_client():
    """A client that never answers the close frame holds the shutdown for the close timeout;
    the second Ctrl-C ends the process at once, with a line saying so and a non-zero exit."""
    with Serving(DBACK_MOCK_INTERVAL="0.05") as server:
        silent = silent_client(server.port)
        server.process.send_signal(signal.SIGINT)
        for line in server.process.stderr:
            server.lines.append(line)
            if "shutting down" in line:
                break
        started = time.monotonic()
        server.process.send_signal(signal.SIGINT)
        status = server.process.wait(timeout=30)
        print(f"exit {time.monotonic() - started:.3f}s after the second SIGINT")
    silent.close()
    assert status == 130, server.log
    assert "second signal during shutdown" in server.log


@pytest.mark.slow
def test_help_and_version_have_short_options_and_show_every_variable():
    assert dback("-V").stdout.startswith("dback, version ")
    assert "Commands:" in dback("-h").stdout
    text = " ".join(dback("serve", "-h").stdout.split())
    for variable in ("DBACK_HOST", "DBACK_PORT", "DBACK_STATIC_DIR", "DBACK_LOG_LEVEL"):
        assert f"env var: {variable}" in text
    assert "DBACK_LOG_FORMAT" in text


@pytest.mark.slow
def test_readyz_waits_until_every_provider_answered_its_first_guild_list(tmp_path):
    """Two providers; one cannot list its guilds yet: 503 naming it, though the mock serves,
    and 200 once it has answered (the periodic reload asks it again)."""
    marker = tmp_path / "database-up"
    install_plugin(
        tmp_path,
        "tp-late-db",
        f"""
        from pathlib import Path
        from dback_core import hookimpl

        @hookimpl
        def get_server_data():
            if not Path({str(marker)!r}).exists():
                raise ConnectionError("database not reachable yet")
            return {{"555": {{"id": "five", "name": "Five"}}}}
        """,
    )
    with Serving(
        DBACK_PLUGINS="tp-late-db,dback-mock",
        DBACK_REFRESH_SECONDS="1",
        DBACK_MOCK_INTERVAL="0.05",
        PYTHONPATH=str(tmp_path),
    ) as server:
        status, body = get_content(server.port, "/readyz")
        assert status == 503, body
        assert list(body["waiting"]) == ["tp-late-db"]
        marker.touch()
        started = time.monotonic()
        while (answer := get_content(server.port, "/readyz"))[0] != 200:
            assert time.monotonic() - started < 30, answer
            time.sleep(0.1)
        print(f"ready {time.monotonic() - started:.2f}s after the provider could answer")


@pytest.mark.slow
def test_plugins_lists_every_installed_plugin_and_the_mock_standing_aside():
    """A configured provider beside the mock: the mock is listed as standing aside (it serves
    nothing), and with DBACK_PLUGINS the plugins left out are listed as not selected."""
    dsn = "postgresql://postgres@127.0.0.1:5432/dback"
    result = dback("plugins", "--json", DBACK_POSTGRES_DSN=dsn)
    assert result.returncode == 0, result.stderr
    statuses = {entry["name"]: entry["status"] for entry in json.loads(result.stdout)["plugins"]}
    assert statuses["dback-mock"] == "standing aside"
    assert statuses["dback-postgres"] == "active"

    alone = dback("plugins", "--json")
    statuses = {entry["name"]: entry["status"] for entry in json.loads(alone.stdout)["plugins"]}
    assert statuses["dback-mock"] == "active"

    chosen = dback("plugins", DBACK_PLUGINS="dback-mock")
    assert chosen.returncode == 0, chosen.stderr
    for name in ("dback-discord", "dback-postgres", "dback-redis"):
        assert re.search(rf"^{name} [\d.]+: not selected$", chosen.stdout, re.MULTILINE)
    assert re.search(r"^dback-mock [\d.]+: active", chosen.stdout, re.MULTILINE)


@pytest.mark.slow
def test_metrics_show_the_mock_standing_aside_and_the_guides_alert_fires_only_on_failures(
    tmp_path,
):
    """A real provider beside the mock, and dback-discord, -postgres and -redis installed but
    not configured: /metrics labels the mock as ``dback plugins`` does, and the alert that
    docs/deployment.md suggests fires for the broken plugin only, not for plugins merely
    installed."""
    install_plugin(
        tmp_path,
        "tp-real",
        """
        from dback_core import hookimpl

        @hookimpl
        def get_server_data():
            return {"777": {"id": "real", "name": "Real"}}

        @hookimpl
        def get_user_data(server_id):
            return {"1": {"uid": "1", "username": "one", "status": "online"}}

        @hookimpl
        def event_sources():
            return []
        """,
    )
    install_plugin(tmp_path, "tp-broken", "import no_such_module_here\n")
    with Serving(PYTHONPATH=str(tmp_path)) as server:
        status, body = get_content(server.port, "/metrics")
    assert status == 200
    statuses = {
        sample.labels["plugin"]: sample.labels["status"]
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "dback_plugin_status" and sample.value == 1
    }
    assert statuses["dback-mock"] == "standing aside"
    assert statuses["tp-real"] == "active"
    assert statuses["dback-postgres"] == "not configured"
    assert statuses["tp-broken"] == "failed"
    guide = (Path(__file__).parent.parent / "docs" / "deployment.md").read_text()
    alerting = re.search(r'dback_plugin_status\{status=~"([^"]+)"\} == 1', guide)
    assert alerting, "the guide no longer suggests the plugin status alert"
    firing = {name for name, shown in statuses.items() if re.fullmatch(alerting[1], shown)}
    assert firing == {"tp-broken"}


def test_with_the_database_down_readyz_is_503_and_the_warning_says_why():
    """The issue's case: PostgreSQL unreachable at startup. Not ready, and the 0-guild
    warning names what the provider waits for."""
    with Serving(
        DBACK_PLUGINS="dback-postgres",
        DBACK_POSTGRES_DSN="postgresql://postgres@127.0.0.1:1/dback",
        DBACK_POSTGRES_RETRY_MAX="0.5",
    ) as server:
        status, body = get_content(server.port, "/readyz")
    assert status == 503, body
    assert body["waiting"]["dback-postgres"].startswith("unavailable: cannot reach PostgreSQL")
    (warning,) = [line for line in server.log.splitlines() if "serving 0 guilds:" in line]
    assert "waiting for dback-postgres (unavailable: cannot reach PostgreSQL" in warning
