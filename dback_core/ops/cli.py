"""The ``dback`` command line: ``serve``, ``plugins``, and whatever plugins add.

Plugins are loaded when the command line is built, so a plugin's own sub-commands (for
example ``dback postgres migrate``) appear beside the core's. What loading found is logged
once the command's logging is set up. ``dback serve`` refuses to start on a configuration
mistake - a bad value in any setting, or a plugin named in ``DBACK_PLUGINS`` that is missing,
broken or not configured - with one line naming it; other commands only report it, so that
``dback plugins`` and set-up commands keep working. ``DBACK_STRICT_PLUGINS`` makes any
plugin failure fatal for every command. An error printed instead of logged is redacted like a
log line (``dback_core.plugin.redaction``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from dback_core.loading.hooks import PluginHooks
from dback_core.loading.plugins import NOT_CONFIGURED, PluginSet, installed_settings, load_plugins
from dback_core.ops.heartbeat import Heartbeat
from dback_core.ops.logs import configure_logging
from dback_core.ops.loops import loop_factory
from dback_core.ops.plugin_about import (
    About,
    default_author,
    default_description,
    git_config,
    prefix_warning,
)
from dback_core.ops.scaffold import check_name, title_of, write_plugin
from dback_core.ops.workers import (
    WORKER_ENV,
    Supervisor,
    scaling_problem,
    worker_command,
    worker_count,
)
from dback_core.plugin.errors import PluginError, ScaffoldError, SettingsError
from dback_core.plugin.redaction import redact
from dback_core.plugin.server_settings import CORE_SETTINGS, Settings, core_setting
from dback_core.plugin.settings import Setting
from dback_core.serving.server import DbackServer
from dback_core.version import __version__
from dback_core.wire.descriptors import raise_open_file_limit
from dback_core.wire.static import front_end_problem

log = logging.getLogger("dback_core")

#: Exit status after a second SIGINT/SIGTERM cut the shutdown short (128 + SIGINT).
FORCED_EXIT = 130

#: Why ``dback serve`` stops when no plugin is installed: dback-core alone serves nothing.
NOTHING_INSTALLED = (
    "no plugin is installed, so there is nothing to serve. Install one beside dback-core: "
    "dback-mock for the simulated D-World (from a checkout: pip install ./plugins/dback_mock), "
    "or a real provider such as dback-postgres or dback-discord (docs/plugins.md)"
)

_CONTEXT = {"help_option_names": ["-h", "--help"]}

_PORT = click.IntRange(0, 65535)
_PORT.name = "port number"


class FrontEndDir(click.Path):
    """``--static-dir``: an existing directory holding a front end's ``index.html``."""

    def __init__(self) -> None:
        super().__init__(exists=True, file_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        assert isinstance(path, Path)  # path_type=Path
        problem = front_end_problem(path)
        if problem is not None:
            self.fail(problem, param, ctx)
        return path


class EnvOption(click.Option):
    """An option whose errors name what the user actually set.

    Click blames ``--port`` for a bad ``DBACK_PORT=abc``; this names the variable when the
    value came from the environment, and the option when it came from the command line.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("show_envvar", True)
        super().__init__(*args, **kwargs)

    def process_value(self, ctx: click.Context, value: Any) -> Any:
        try:
            return super().process_value(ctx, value)
        except click.BadParameter as error:
            if ctx.get_parameter_source(str(self.name)) == ParameterSource.ENVIRONMENT:
                error.param_hint = f"{self.envvar}={os.environ.get(str(self.envvar), '')}"
            else:
                error.param_hint = "/".join(self.opts)
            raise


@click.group(context_settings=_CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="dback")
@click.pass_context
def cli(context: click.Context) -> None:
    """dback: a real-time presence server for the d-zone client."""
    found = context.find_object(PluginSet)
    if found is not None and context.invoked_subcommand != "serve":
        found.report()  # ``serve`` reports after setting up its own logging


class ServeCommand(click.Command):
    """``dback serve``, whose help ends with the core's settings that have no option and a
    section per installed plugin listing the settings it declares, so one ``--help`` shows
    every variable that can be set."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        offered = {param.envvar for param in self.params if isinstance(param, click.Option)}
        with formatter.section("Core settings"):
            formatter.write_dl(
                [(s.variable, _setting_help(s)) for s in CORE_SETTINGS if s.variable not in offered]
            )
        for name, settings in installed_settings().items():
            with formatter.section(f"Plugin {name}"):
                if settings:
                    formatter.write_dl([(s.variable, _setting_help(s)) for s in settings])
                else:
                    formatter.write_text("declares no settings")


def _setting_help(setting: Setting) -> str:
    facts = [setting.type.__name__]
    if setting.choices:
        facts.append("one of " + ", ".join(setting.choices))
    if setting.minimum is not None:
        facts.append(f"at least {setting.minimum:g}")
    if setting.shown_default is not None:
        facts.append(f"default: {setting.shown_default}")
    if setting.secret:
        facts.append("secret")
    return f"{setting.help}  [{'; '.join(facts)}]" if setting.help else f"[{'; '.join(facts)}]"


_F = TypeVar("_F", bound=Callable[..., Any])


def _core_option(flag: str, variable: str, **options: Any) -> Callable[[_F], _F]:
    """``flag`` as an option of ``dback serve`` for the core setting ``variable``: its
    default and help come from the declaration in ``CORE_SETTINGS``."""
    setting = core_setting(variable)
    if setting.choices:
        options.setdefault("type", click.Choice(setting.choices, case_sensitive=False))
    return click.option(
        flag,
        cls=EnvOption,
        envvar=variable,
        default=setting.default,
        show_default=setting.default is not None,
        help=setting.help[:1].upper() + setting.help[1:] + ".",
        **options,
    )


@cli.command(cls=ServeCommand, context_settings=_CONTEXT)
@_core_option("--host", "DBACK_HOST")
@_core_option("--port", "DBACK_PORT", type=_PORT)
@_core_option(
    "--static-dir",
    "DBACK_STATIC_DIR",
    type=FrontEndDir(),
)
@_core_option("--log-level", "DBACK_LOG_LEVEL")
@_core_option("--log-format", "DBACK_LOG_FORMAT")
@_core_option("--workers", "DBACK_WORKERS", type=click.IntRange(min=0))
def serve(
    host: str, port: int, static_dir: Path | None, log_level: str, log_format: str, workers: int
) -> None:
    """Serve d-zone clients until SIGINT or SIGTERM (a second one forces the exit).

    Every other setting is read from its DBACK_* variable (docs/configuration.md). A bad
    value, or a plugin named in DBACK_PLUGINS that is missing, broken or not configured,
    stops the command with a line naming it.
    """
    configure_logging(log_level, log_format.lower())
    try:
        settings = Settings.from_env(host=host, port=port, static_dir=static_dir)
        plugins = _plugin_set()
        count = worker_count(workers)
        worker_timeout: float = core_setting("DBACK_WORKER_TIMEOUT").parse(os.environ)
        loop_name, new_loop = loop_factory(settings.event_loop)
    except (ValueError, PluginError) as error:
        raise click.ClickException(redact(str(error))) from error
    if not plugins.installed:
        raise click.ClickException(NOTHING_INSTALLED)
    _refuse_mistakes(plugins)
    if count > 1:
        _supervise(count, settings, plugins, log_level, log_format, worker_timeout)
        return
    plugins.report()
    log.info("event loop: %s", loop_name)
    heartbeat = Heartbeat.from_environ(os.environ, worker_timeout)
    try:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(_serve(settings, plugins, heartbeat))
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{port}: {error}") from error
    _refuse_mistakes(plugins)  # a plugin's ``startup`` may find one too


def _refuse_mistakes(plugins: PluginSet) -> None:
    problems = plugins.fatal_problems()
    if problems:
        raise click.ClickException(redact("\n".join(problems)))


def _supervise(
    count: int,
    settings: Settings,
    plugins: PluginSet,
    log_level: str,
    log_format: str,
    worker_timeout: float,
) -> None:
    """Run ``count`` workers of this ``serve`` instead of serving here, when an active plugin
    shares one world between them (the ``worker_sharing`` hook)."""
    plugin, sharing = asyncio.run(PluginHooks(plugins).worker_sharing())
    problem = scaling_problem(settings.port, plugin, sharing)
    if problem is not None:
        raise click.ClickException(problem)
    arguments = ["--host", settings.host, "--port", str(settings.port)]
    arguments += ["--log-level", log_level, "--log-format", log_format]
    if settings.static_dir is not None:
        arguments += ["--static-dir", str(settings.static_dir)]
    environ = {**os.environ, "DBACK_WORKERS": "1", "DBACK_REUSE_PORT": "1"}
    supervisor = Supervisor(count, worker_command(arguments), environ, timeout=worker_timeout)
    asyncio.run(supervisor.run())


async def _serve(settings: Settings, plugins: PluginSet, heartbeat: Heartbeat | None) -> None:
    """Serve until a signal; a supervised worker beats to its supervisor meanwhile, and says
    so once it listens."""
    raise_open_file_limit()
    beating = asyncio.create_task(heartbeat.run()) if heartbeat else None
    try:
        await _serve_until_stopped(settings, plugins, heartbeat)
    finally:
        if beating is not None:
            beating.cancel()


async def _serve_until_stopped(
    settings: Settings, plugins: PluginSet, heartbeat: Heartbeat | None
) -> None:
    server = DbackServer(plugins, settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    supervised = WORKER_ENV in os.environ

    def on_signal() -> None:
        if stop.is_set() and supervised:
            # One Ctrl-C or ``systemctl stop`` reaches a worker twice: from the terminal or
            # systemd, and forwarded by the supervisor. The supervisor alone decides to force.
            log.debug("signal during shutdown: the supervisor decides whether to force")
            return
        if stop.is_set():
            log.warning("second signal during shutdown: exiting without waiting for clients")
            logging.shutdown()
            os._exit(FORCED_EXIT)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    await server.start()
    if plugins.fatal_problems():
        await server.stop()
        return
    if heartbeat is not None:
        heartbeat.serving()
    if not server.directory.servers:
        log.warning(_no_guilds_hint(plugins, server.readiness()))
    await stop.wait()
    log.info("shutting down" if supervised else "shutting down (a second Ctrl-C exits at once)")
    await server.stop()


def _no_guilds_hint(plugins: PluginSet, waiting: dict[str, str]) -> str:
    """The 0-guild warning: which plugins are active, what they wait for (a database that
    is down), and what would add guilds - each active provider's own remedy when it names
    one (served at once), else the settings of the plugins not configured (read at start,
    so those need a restart)."""
    serving = [record for record in plugins.active if not plugins.stands_aside(record)]
    waits = [f"{name} ({reason})" for name, reason in waiting.items() if name != "server"]
    remedies = [
        f"{record.name}: {record.no_guilds_hint}" for record in serving if record.no_guilds_hint
    ]
    unset = [
        f"{record.name} ({record.error})"
        for record in plugins.records
        if record.status == NOT_CONFIGURED
    ]
    if waits:
        hint = "waiting for " + "; ".join(waits)
    elif remedies:
        hint = "to add guilds: " + "; ".join(remedies)
    elif unset:
        hint = "to add guilds, configure " + "; ".join(unset) + ", then restart dback"
    else:
        hint = "give the active plugins guilds to serve, or choose others with DBACK_PLUGINS"
    active = ", ".join(record.name for record in serving) or "none"
    return f"serving 0 guilds: active plugins: {active}; {hint} (see 'dback plugins')"


@cli.command(context_settings=_CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List installed plugins: version, status, hooks, and the effective order.

    Statuses: active, standing aside (an embedded default a real plugin replaces), not
    configured, failed, disabled (DBACK_DISABLE_PLUGINS), not selected (left out of
    DBACK_PLUGINS).
    """
    try:
        plugin_set = _plugin_set()
    except (PluginError, SettingsError) as error:
        raise click.ClickException(redact(str(error))) from error
    plugin_set.report()
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
        for setting in entry["settings"]:
            click.echo(f"    {setting['variable']}: {_shown_value(setting)}")
    chosen = [setting for setting in description["core_settings"] if setting["value"] is not None]
    if chosen:
        click.echo("core settings set here:")
        for setting in chosen:
            click.echo(f"    {setting['variable']}: {_shown_value(setting)}")


def _shown_value(setting: dict[str, Any]) -> str:
    """A setting's value for the table: as set (secrets masked), else its default."""
    if setting["value"] is not None:
        return str(setting["value"])
    return "unset" if setting["default"] is None else f"{setting['shown_default']} (default)"


@cli.command("new-plugin", context_settings=_CONTEXT)
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    help="Where to create the package folder (default: the current directory).",
)
@click.option("--author", help="The LICENSE holder and package author (default: git user.name).")
@click.option("--email", help="The author's e-mail in the metadata (default: git user.email).")
@click.option("--url", help="The project's home, e.g. its GitHub repository (default: none).")
@click.option("--description", help="One line saying what the plugin serves.")
def new_plugin(
    name: str,
    parent: Path,
    author: str | None,
    email: str | None,
    url: str | None,
    description: str | None,
) -> None:
    """Write a ready plugin package NAME: a provider serving one guild, its settings, tests,
    README, LICENSE and GitHub workflows (tests; build, check and publish on a tag). It
    installs and passes its tests as written. On a terminal it asks for what the options
    do not give; otherwise it takes git's user.name and user.email."""
    try:
        plugin = check_name(name)
    except ScaffoldError as error:
        raise click.ClickException(str(error)) from error
    warning = prefix_warning(plugin)
    if warning is not None:
        click.echo(f"Warning: {warning}", err=True)
    about = _ask_about(plugin, author, email, url, description)
    try:
        target = write_plugin(plugin, parent, about)
    except ScaffoldError as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:
        raise click.ClickException(f"cannot write the package: {error}") from error
    click.echo(f"wrote {target} (MIT LICENSE held by {about.author})")
    click.echo(f"  pip install -e '{target}[test]'   then: cd {target} && python -m pytest")
    click.echo(f"  DBACK_PLUGINS={plugin} dback serve")
    if not about.url:
        click.echo("No --url: add [project.urls] to pyproject.toml before you publish.")


def _ask_about(
    plugin: str, author: str | None, email: str | None, url: str | None, description: str | None
) -> About:
    """The options given, the rest asked on a terminal, or else their defaults."""
    defaults = About(
        author or default_author(),
        description or default_description(title_of(plugin)),
        email if email is not None else git_config("user.email"),
        url or "",
    )
    if not sys.stdin.isatty():
        return defaults

    def ask(given: str | None, question: str, default: str) -> str:
        if given is not None:
            return given
        answer: str = click.prompt(question, default=default, show_default=bool(default))
        return answer.strip()

    return About(
        ask(author, "Author (LICENSE holder)", defaults.author) or defaults.author,
        ask(description, "Description", defaults.description) or defaults.description,
        ask(email, "E-mail (empty: none)", defaults.email),
        ask(url, "Project URL, e.g. its GitHub repository (empty: none)", defaults.url),
    )


def _plugin_set() -> PluginSet:
    """The plugins loaded while building the command line, or a fresh load.

    Reusing the set from ``build_cli`` means a plugin is imported and instantiated once per
    command, and its load errors are reported once (by the caller, once logging is set up).
    """
    context = click.get_current_context(silent=True)
    found = context.find_object(PluginSet) if context is not None else None
    return found if found is not None else load_plugins(report=False)


def build_cli() -> tuple[click.Group, PluginSet]:
    """The command line with every active plugin's sub-commands added, and those plugins."""
    try:
        configure_logging("WARNING", (os.environ.get("DBACK_LOG_FORMAT") or "text").lower())
    except ValueError:
        configure_logging("WARNING")  # ``serve`` reports the bad value through its option
    try:
        plugin_set = load_plugins(report=False)
    except (PluginError, SettingsError) as error:
        click.echo(f"Error: {redact(str(error))}", err=True)
        sys.exit(1)
    PluginHooks(plugin_set).register_commands(cli)
    return cli, plugin_set


def main() -> None:
    group, plugin_set = build_cli()
    group(prog_name="dback", obj=plugin_set)
