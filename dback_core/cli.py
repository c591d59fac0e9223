"""The ``dback`` command line: ``serve``, ``plugins``, and whatever plugins add.

Plugins are loaded when the command line is built, so a plugin's own sub-commands (for
example ``dback postgres migrate``) appear beside the core's. A plugin that fails to load
is reported, not fatal - unless ``DBACK_STRICT_PLUGINS`` says otherwise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import click

from dback_core.config import Settings
from dback_core.descriptors import raise_open_file_limit
from dback_core.hooks import PluginHooks
from dback_core.logs import FORMATS, configure_logging
from dback_core.plugins import PluginError, PluginSet, load_plugins
from dback_core.server import DbackServer
from dback_core.version import __version__

log = logging.getLogger("dback_core")


@click.group()
@click.version_option(__version__, prog_name="dback")
def cli() -> None:
    """dback: a real-time presence server for the d-zone client."""


@cli.command()
@click.option("--host", envvar="DBACK_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="DBACK_PORT", type=int, default=3000, show_default=True)
@click.option(
    "--static-dir",
    envvar="DBACK_STATIC_DIR",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Serve a front end (such as the d-zone client) from this directory.",
)
@click.option(
    "--log-level",
    envvar="DBACK_LOG_LEVEL",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option(
    "--log-format",
    envvar="DBACK_LOG_FORMAT",
    default="text",
    show_default=True,
    type=click.Choice(FORMATS, case_sensitive=False),
    help="'json' writes one JSON object per line, for log shippers.",
)
def serve(host: str, port: int, static_dir: Path | None, log_level: str, log_format: str) -> None:
    """Serve d-zone clients until SIGINT or SIGTERM."""
    configure_logging(log_level, log_format.lower())
    try:
        settings = Settings.from_env(host=host, port=port, static_dir=static_dir)
        plugins = _plugin_set()
    except (ValueError, PluginError) as error:
        raise click.ClickException(str(error)) from error
    try:
        asyncio.run(_serve(settings, plugins))
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{port}: {error}") from error


async def _serve(settings: Settings, plugins: PluginSet) -> None:
    raise_open_file_limit()
    server = DbackServer(plugins, settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    await stop.wait()
    log.info("shutting down")
    await server.stop()


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List installed plugins: version, status, hooks, and the effective order."""
    try:
        plugin_set = _plugin_set()
    except PluginError as error:
        raise click.ClickException(str(error)) from error
    description = plugin_set.describe()
    if as_json:
        click.echo(json.dumps(description, indent=2))
        return
    click.echo("order: " + (", ".join(description["order"]) or "(no active plugins)"))
    for entry in description["plugins"]:
        status = entry["status"] + (f" ({entry['error']})" if entry["error"] else "")
        fallback = " [embedded default]" if entry["fallback_only"] else ""
        click.echo(f"{entry['name']} {entry['version'] or ''}: {status}{fallback}")
        if entry["detail"]:
            click.echo("    " + entry["detail"])
        if entry["hooks"]:
            click.echo("    hooks: " + ", ".join(entry["hooks"]))


def _plugin_set() -> PluginSet:
    """The plugins loaded while building the command line, or a fresh load.

    Reusing the set from ``build_cli`` means a plugin is imported and instantiated once per
    command, and its load errors are reported once.
    """
    context = click.get_current_context(silent=True)
    found = context.find_object(PluginSet) if context is not None else None
    return found if found is not None else load_plugins()


def build_cli() -> tuple[click.Group, PluginSet]:
    """The command line with every active plugin's sub-commands added, and those plugins."""
    try:
        configure_logging("WARNING", (os.environ.get("DBACK_LOG_FORMAT") or "text").lower())
    except ValueError:
        configure_logging("WARNING")  # ``serve`` reports the bad value through its option
    try:
        plugin_set = load_plugins()
    except PluginError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
    PluginHooks(plugin_set).register_commands(cli)
    return cli, plugin_set


def main() -> None:
    group, plugin_set = build_cli()
    group(prog_name="dback", obj=plugin_set)
