"""Finding, ordering and registering plugins.

Plugins are distributions with an entry point in the ``dback`` group; the entry point's name
(normalised like a distribution name) is the plugin's name everywhere: in ``DBACK_PLUGINS``,
``dback plugins``, logs and errors. Loading happens in ``load_plugins`` - never at import - so
the CLI and tests can pass their own environment, and each plugin is loaded on its own: one
that fails to import, or implements a hook that does not exist, is reported and skipped
unless strict mode asks for a hard stop. Loading only records what happened; ``report`` logs
it and ``fatal_problems`` says what stops ``dback serve``, so the command can set up logging
between the two and refuse to serve a configuration the operator got wrong.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from dback_core.plugin import hookspecs
from dback_core.plugin.errors import NotConfigured, PluginError, SettingsError
from dback_core.plugin.health import Health
from dback_core.plugin.redaction import redact
from dback_core.plugin.server_settings import CORE_SETTINGS, core_setting
from dback_core.plugin.settings import Setting, declared, read

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dback"
#: Comma-separated plugin names in priority order; unset loads every installed plugin.
PLUGINS_ENV = "DBACK_PLUGINS"
#: Comma-separated plugin names that are installed but must not be loaded.
DISABLE_ENV = "DBACK_DISABLE_PLUGINS"
#: When true, any plugin failure stops startup instead of being skipped.
STRICT_ENV = "DBACK_STRICT_PLUGINS"

ACTIVE = "active"
DISABLED = "disabled"
FAILED = "failed"
NOT_CONFIGURED = "not configured"
#: Installed, but left out by ``DBACK_PLUGINS``: listed by ``dback plugins``, never loaded.
NOT_SELECTED = "not selected"
#: Shown (never stored) for an embedded default whose every data hook a real plugin answers.
STANDING_ASIDE = "standing aside"

#: Hooks for which an embedded default (the mock) steps aside when a real plugin implements
#: them (their ``fallback_steps_aside`` rule). Lifecycle and command hooks always run for
#: every active plugin.
DATA_HOOKS = frozenset(name for name, rule in hookspecs.RULES.items() if rule.fallback_steps_aside)
#: Shown for an active plugin that another plugin holds back (see ``PluginHost.hold_plugins``).
STANDBY = "standby"

#: A plugin (module, class or instance) that sets this attribute to True is an embedded
#: default: it answers a hook only when no other active plugin implements that hook, unless
#: it is named in DBACK_PLUGINS. This keeps mock guilds out of real deployments.
FALLBACK_ATTRIBUTE = "dback_fallback_only"
#: A plugin may set this attribute to a short text about its configuration (never a secret),
#: shown by ``dback plugins`` - for example which Redis a bus plugin uses and in which role.
#: It is read each time the plugins are described, so it may change while the server runs.
DETAIL_ATTRIBUTE = "dback_detail"
#: A plugin may set this attribute to what gives it guilds to serve ("insert a row into its
#: servers table: served at once"), named when the server starts with none: the remedy only
#: the plugin knows, instead of a generic one.
NO_GUILDS_HINT_ATTRIBUTE = "dback_no_guilds_hint"
#: A plugin that sets this attribute to True decides whether the other plugins run in this
#: process: they start on standby, and it releases them (``PluginHost.release_plugins``) -
#: for example once this process has won the election to run the providers.
HOLDER_ATTRIBUTE = "dback_holds_others"


def normalize_name(name: str) -> str:
    """Normalise like distribution names, so ``dback_mock`` and ``DBack-Mock`` are one plugin."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _parse_list(value: str) -> list[str]:
    """The names in a ``DBACK_PLUGINS``-style list: separated by commas, or by spaces as
    people also write them (a name never contains one)."""
    return [normalize_name(part) for part in re.split(r"[,\s]+", value) if part]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known``, or nothing."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _installed_text(installed: Iterable[str]) -> str:
    names = sorted(installed)
    return "installed: " + (", ".join(names) if names else "none")


@dataclass
class PluginRecord:
    """One plugin as the user sees it in ``dback plugins``: name, version, status, hooks."""

    name: str
    version: str | None = None
    status: str = ACTIVE
    error: str | None = None
    plugin: Any = None
    fallback_only: bool = False
    explicit: bool = False
    source: str = "entry point"
    hooks: list[str] = field(default_factory=list)
    #: The variable of a ``SettingsError`` the plugin raised: fatal for ``dback serve``.
    bad_setting: str | None = None
    #: Held back by a plugin that decides whether the others run here: not started, not
    #: asked, until released.
    standby: bool = False
    #: What the plugin reports about itself while the server runs
    #: (see ``dback_core.plugin.health``).
    health: Health = field(default_factory=Health)
    #: The settings it declares (``dback_core.plugin.settings``), shown by ``dback plugins``.
    settings: tuple[Setting, ...] = ()

    @property
    def is_active(self) -> bool:
        return self.status == ACTIVE

    @property
    def holds_others(self) -> bool:
        return bool(getattr(self.plugin, HOLDER_ATTRIBUTE, False))

    @property
    def no_guilds_hint(self) -> str | None:
        hint = getattr(self.plugin, NO_GUILDS_HINT_ATTRIBUTE, None)
        return hint if isinstance(hint, str) and hint else None

    @property
    def detail(self) -> str | None:
        if self.plugin is None or inspect.isclass(self.plugin):
            return None  # a class left by a plugin that is not configured has no detail yet
        detail = getattr(self.plugin, DETAIL_ATTRIBUTE, None)
        return str(detail) if detail else None

    @property
    def shown_status(self) -> str:
        """The status users see: the load status, or for an active plugin ``standby`` while
        held back, or ``unavailable`` / ``failed`` when it reported trouble at run time."""
        if self.is_active and self.standby:
            return STANDBY
        if self.is_active and not self.health.serving:
            return self.health.status
        return self.status

    @property
    def shown_error(self) -> str | None:
        if self.is_active and not self.health.serving:
            return self.health.reason
        return self.error

    @property
    def is_standby_fallback(self) -> bool:
        """True for an embedded default that yields to any real provider."""
        return self.fallback_only and not self.explicit

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "status": self.shown_status,
            "error": redact(self.shown_error) if self.shown_error else None,
            "hooks": sorted(self.hooks),
            "fallback_only": self.fallback_only,
            "source": self.source,
            "detail": redact(detail) if (detail := self.detail) else None,
            "settings": [setting.describe(os.environ) for setting in self.settings],
        }


class PluginSet:
    """The loaded plugins in their effective order, and the pluggy manager holding them.

    ``not_selected`` holds the installed plugins that ``DBACK_PLUGINS`` leaves out - listed,
    never loaded - and ``unknown_disabled`` the names in ``DBACK_DISABLE_PLUGINS`` that match
    no installed plugin, with ``installed`` every installed name, for the hints.
    """

    def __init__(
        self,
        records: list[PluginRecord],
        manager: pluggy.PluginManager,
        not_selected: list[PluginRecord] | None = None,
        unknown_disabled: list[str] | None = None,
        installed: list[str] | None = None,
    ) -> None:
        self.records = records
        self.manager = manager
        self.not_selected = not_selected or []
        self.unknown_disabled = unknown_disabled or []
        self.installed = installed or []
        self._reported = False

    @property
    def active(self) -> list[PluginRecord]:
        return [record for record in self.records if record.is_active]

    def stands_aside(self, record: PluginRecord) -> bool:
        """True for an active embedded default whose every data hook another plugin answers
        (so it serves nothing), the same rule by which the hooks skip it."""
        if not (record.is_active and record.is_standby_fallback):
            return False
        data_hooks = DATA_HOOKS.intersection(record.hooks)
        others = [
            other for other in self.active if other is not record and not other.is_standby_fallback
        ]
        return bool(data_hooks) and all(
            any(hook in other.hooks for other in others) for hook in data_hooks
        )

    def status_of(self, record: PluginRecord) -> str:
        """The status a user sees: the stored one, or ``standing aside``."""
        return STANDING_ASIDE if self.stands_aside(record) else record.shown_status

    def fatal_problems(self) -> list[str]:
        """One line per mistake that must stop ``dback serve``, naming plugin and cause.

        A setting with a bad value is fatal for any plugin; a plugin the operator named in
        ``DBACK_PLUGINS`` is fatal when it is not installed, fails to load or is not
        configured - serving without it would only look like a working server.
        """
        problems = []
        for record in self.records:
            if record.bad_setting is not None:
                problems.append(f"plugin {record.name}: {record.error}")
            elif record.explicit and record.source == "entry point":
                if record.status == FAILED:
                    problems.append(
                        f"plugin {record.name} named in {PLUGINS_ENV} failed: {record.error}"
                    )
                elif record.status == NOT_CONFIGURED:
                    problems.append(
                        f"plugin {record.name} named in {PLUGINS_ENV} is not configured: "
                        f"{record.error}"
                    )
        return problems

    def report(self) -> None:
        """Log what loading found: failures (ERROR), names in ``DBACK_DISABLE_PLUGINS``
        matching nothing and active plugins implementing no hook (WARNING), plugins not
        configured (INFO). Only the first call logs, so each is reported once."""
        if self._reported:
            return
        self._reported = True
        for name in self.unknown_disabled:
            log.warning(
                "%s names %r, which is not installed%s; %s",
                DISABLE_ENV,
                name,
                did_you_mean(name, self.installed),
                _installed_text(self.installed),
            )
        for record in self.records:
            if record.status == FAILED:
                log.error("plugin %s failed to load and is skipped: %s", record.name, record.error)
            elif record.status == NOT_CONFIGURED:
                log.info("plugin %s is not configured: %s", record.name, record.error)
            elif record.is_active and not record.hooks:
                log.warning("plugin %s %s", record.name, _no_hooks_hint(record.plugin))

    def find(self, plugin: Any) -> PluginRecord | None:
        """The record of ``plugin``, given as the registered object or by name."""
        if isinstance(plugin, str):
            name = normalize_name(plugin)
            return next((record for record in self.records if record.name == name), None)
        return next((record for record in self.records if record.plugin is plugin), None)

    def describe(self) -> dict[str, Any]:
        """The data behind ``dback plugins --json``."""
        entries = []
        for record in [*self.records, *self.not_selected]:
            entry = record.describe()
            entry["status"] = self.status_of(record)
            entries.append(entry)
        return {
            "order": [record.name for record in self.active],
            "core_settings": [setting.describe(os.environ) for setting in CORE_SETTINGS],
            "merge": {
                name: rule.text
                for name, rule in hookspecs.RULES.items()
                if rule.combine in (hookspecs.MERGE, hookspecs.FIRST)
            },
            "plugins": entries,
        }


def _no_hooks_hint(plugin: Any) -> str:
    """Why an active plugin might implement no hook: almost always a missing ``@hookimpl``,
    which leaves a method that looks right but is never called."""
    lookalikes = [name for name in hook_names() if callable(getattr(plugin, name, None))]
    if lookalikes:
        return (
            f"implements no hooks, though it has {', '.join(lookalikes)}: "
            "decorate them with @dback_core.hookimpl"
        )
    return "implements no hooks (is @dback_core.hookimpl missing?), so it does nothing"


def hook_names() -> list[str]:
    """Every hook defined in ``dback_core.plugin.hookspecs``, sorted."""
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return sorted(name for name, value in vars(hookspecs).items() if hasattr(value, marker))


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    return manager


def _distribution_version(entry_point: EntryPoint) -> str | None:
    dist = getattr(entry_point, "dist", None)
    return dist.version if dist is not None else None


def _discover(strict: bool) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        name = normalize_name(entry_point.name)
        if name in found and found[name].value != entry_point.value:
            message = (
                f"two installed plugins are both named {name!r}: "
                f"{found[name].value} and {entry_point.value}"
            )
            if strict:
                raise PluginError(message)
            log.error("%s; using the first", message)
            continue
        found[name] = entry_point
    return found


def _instantiate(loaded: Any) -> Any:
    """An entry point may name a module, an instance, or a class (one instance per server)."""
    return loaded() if inspect.isclass(loaded) else loaded


def _check_settings(record: PluginRecord, plugin: Any) -> None:
    """Read the settings ``plugin`` declares, so a bad value fails the plugin naming its
    variable - in the same words for every plugin, and before the plugin is constructed."""
    record.settings = declared(plugin)
    read(record.settings)


def _register(manager: pluggy.PluginManager, record: PluginRecord, plugin: Any) -> None:
    """Register ``plugin`` and reject hook names that match no hookspec (typos)."""
    manager.register(plugin, name=record.name)
    known = hook_names()
    unknown = [
        caller.name for caller in manager.get_hookcallers(plugin) or [] if not caller.has_spec()
    ]
    if unknown:
        manager.unregister(plugin)
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise PluginError(f"implements unknown hook {', '.join(hints)}")
    record.plugin = plugin
    record.hooks = [caller.name for caller in manager.get_hookcallers(plugin) or []]
    record.fallback_only = bool(getattr(plugin, FALLBACK_ATTRIBUTE, False))


def _fail(record: PluginRecord, error: BaseException, strict: bool) -> None:
    record.status = FAILED
    if isinstance(error, SettingsError):
        record.bad_setting = error.variable
        record.error = str(error)
    elif isinstance(error, LookupError):
        record.error = str(error.args[0])
    else:
        record.error = f"{type(error).__name__}: {error}"
    if strict:
        raise PluginError(f"plugin {record.name!r} failed to load: {record.error}") from error


def load_plugins(
    environ: Mapping[str, str] | None = None,
    in_process: Iterable[tuple[str, Any]] = (),
    strict: bool | None = None,
    report: bool = True,
) -> PluginSet:
    """Load the plugins the environment asks for, in the order it asks for.

    ``in_process`` plugins (name, object) come first, in the given order: that is how the
    d-back style callbacks of ``WebSocketServer`` take precedence over installed plugins.
    ``DBACK_PLUGINS`` unset means every installed plugin, real providers first (by name) and
    embedded defaults such as the mock last; set to ``""`` it means none. ``report=False``
    leaves logging the outcome to the caller (``PluginSet.report``), which the CLI does once
    it has set up logging.
    """
    environ = os.environ if environ is None else environ
    if strict is None:
        strict = bool(core_setting(STRICT_ENV).parse(environ))
    manager = _new_manager()
    records: list[PluginRecord] = []

    for name, plugin in in_process:
        record = PluginRecord(name=normalize_name(name), source="in-process", explicit=True)
        records.append(record)
        try:
            _check_settings(record, plugin)
            _register(manager, record, plugin)
        except Exception as error:
            _fail(record, error, strict)

    available = _discover(strict)
    requested = environ.get(PLUGINS_ENV)
    disabled = set(_parse_list(environ.get(DISABLE_ENV, "")))
    if requested is None:
        order = sorted(available)
        explicit = False
    else:
        order = list(dict.fromkeys(_parse_list(requested)))
        explicit = True

    loaded: list[PluginRecord] = []
    for name in order:
        record = PluginRecord(name=name, explicit=explicit)
        entry_point = available.get(name)
        if entry_point is None:
            missing = (
                f"no installed plugin is named {name!r}{did_you_mean(name, available)}; "
                + _installed_text(available)
            )
            _fail(record, LookupError(missing), strict)
            loaded.append(record)
            continue
        record.version = _distribution_version(entry_point)
        if name in disabled:
            record.status = DISABLED
            loaded.append(record)
            continue
        loaded_object = None
        try:
            loaded_object = entry_point.load()
            _check_settings(record, loaded_object)
            _register(manager, record, _instantiate(loaded_object))
        except NotConfigured as reason:
            record.status = NOT_CONFIGURED
            record.error = str(reason)
            # Kept so its static ``register_commands`` can still add set-up commands.
            record.plugin = loaded_object
        except Exception as error:
            _fail(record, error, strict)
        loaded.append(record)

    if not explicit:
        # Embedded defaults go last so that a real provider, installed beside them, leads.
        loaded.sort(key=lambda record: record.fallback_only)
    records.extend(loaded)
    not_selected = [
        PluginRecord(
            name=name,
            version=_distribution_version(available[name]),
            status=NOT_SELECTED,
        )
        for name in sorted(set(available) - set(order))
    ]
    unknown_disabled = sorted(disabled - set(available))
    plugin_set = PluginSet(records, manager, not_selected, unknown_disabled, sorted(available))
    if report:
        plugin_set.report()
    return plugin_set


def installed_settings() -> dict[str, tuple[Setting, ...]]:
    """The settings every installed plugin declares, by plugin name, for ``dback serve
    --help``: each plugin is imported (not constructed), whether or not it would be loaded;
    one that cannot be imported is left out (``dback plugins`` says why)."""
    found: dict[str, tuple[Setting, ...]] = {}
    for name, entry_point in sorted(_discover(strict=False).items()):
        try:
            found[name] = declared(entry_point.load())
        except Exception:
            log.debug("cannot read the settings of plugin %s", name, exc_info=True)
    return found
