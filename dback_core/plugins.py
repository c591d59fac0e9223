"""Finding, ordering and registering plugins.

Plugins are distributions with an entry point in the ``dback`` group; the entry point's name
(normalised like a distribution name) is the plugin's name everywhere: in ``DBACK_PLUGINS``,
``dback plugins``, logs and errors. Loading happens in ``load_plugins`` - never at import - so
the CLI and tests can pass their own environment, and each plugin is loaded on its own: one
that fails to import, or implements a hook that does not exist, is reported and skipped
unless strict mode asks for a hard stop.
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

from dback_core import hookspecs
from dback_core.health import Health
from dback_core.logs import redact

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
#: Shown for an active plugin that another plugin holds back (see ``DbackServer.hold_plugins``).
STANDBY = "standby"

#: A plugin (module, class or instance) that sets this attribute to True is an embedded
#: default: it answers a hook only when no other active plugin implements that hook, unless
#: it is named in DBACK_PLUGINS. This keeps mock guilds out of real deployments.
FALLBACK_ATTRIBUTE = "dback_fallback_only"
#: A plugin may set this attribute to a short text about its configuration (never a secret),
#: shown by ``dback plugins`` - for example which Redis a bus plugin uses and in which role.
#: It is read each time the plugins are described, so it may change while the server runs.
DETAIL_ATTRIBUTE = "dback_detail"
#: A plugin that sets this attribute to True decides whether the other plugins run in this
#: process: they start on standby, and it releases them (``DbackServer.release_plugins``) -
#: for example once this process has won the election to run the providers.
HOLDER_ATTRIBUTE = "dback_holds_others"


class PluginError(RuntimeError):
    """A plugin could not be loaded and strict mode is on, or the configuration is invalid."""


class NotConfigured(Exception):
    """Raised by a plugin class's constructor (or its ``startup``) when it lacks its settings.

    The plugin is then listed as "not configured" with the message - not as failed - and
    the embedded default keeps serving, so installing a provider never empties the world
    before it is set up.
    """


class AccessRefused(Exception):
    """Raised by an ``authorize`` implementation to refuse a client with its own message.

    Returning False refuses with the generic "authentication failed"; raising this shows the
    client ``str(error)`` instead, for refusals the client can act on ("login is busy, try
    again"). The message goes to the client as written, so it must never hold a credential.
    """


def normalize_name(name: str) -> str:
    """Normalise like distribution names, so ``dback_mock`` and ``DBack-Mock`` are one plugin."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _parse_list(value: str) -> list[str]:
    return [normalize_name(part) for part in value.split(",") if part.strip()]


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
    #: Held back by a plugin that decides whether the others run here: not started, not
    #: asked, until released.
    standby: bool = False
    #: What the plugin reports about itself while the server runs (see ``dback_core.health``).
    health: Health = field(default_factory=Health)

    @property
    def is_active(self) -> bool:
        return self.status == ACTIVE

    @property
    def holds_others(self) -> bool:
        return bool(getattr(self.plugin, HOLDER_ATTRIBUTE, False))

    @property
    def detail(self) -> str | None:
        detail = getattr(self.plugin, DETAIL_ATTRIBUTE, None) if self.plugin is not None else None
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
        }


class PluginSet:
    """The loaded plugins in their effective order, and the pluggy manager holding them."""

    def __init__(self, records: list[PluginRecord], manager: pluggy.PluginManager) -> None:
        self.records = records
        self.manager = manager

    @property
    def active(self) -> list[PluginRecord]:
        return [record for record in self.records if record.is_active]

    def find(self, plugin: Any) -> PluginRecord | None:
        """The record of ``plugin``, given as the registered object or by name."""
        if isinstance(plugin, str):
            name = normalize_name(plugin)
            return next((record for record in self.records if record.name == name), None)
        return next((record for record in self.records if record.plugin is plugin), None)

    def describe(self) -> dict[str, Any]:
        """The data behind ``dback plugins --json``."""
        return {
            "order": [record.name for record in self.active],
            "merge": {
                "get_server_data": "union of every plugin's guilds; the earlier plugin wins a key",
                "get_user_data": "the first plugin in order with a non-empty answer",
                "authorize": "the first plugin that returns True or False decides; none: refused",
                "get_client_id": "the first non-empty answer",
            },
            "plugins": [record.describe() for record in self.records],
        }


def hook_names() -> list[str]:
    """Every hook defined in ``dback_core.hookspecs``, sorted."""
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
    record.error = f"{type(error).__name__}: {error}"
    if strict:
        raise PluginError(f"plugin {record.name!r} failed to load: {record.error}") from error
    log.error("plugin %s failed to load and is skipped: %s", record.name, record.error)


def load_plugins(
    environ: Mapping[str, str] | None = None,
    in_process: Iterable[tuple[str, Any]] = (),
    strict: bool | None = None,
) -> PluginSet:
    """Load the plugins the environment asks for, in the order it asks for.

    ``in_process`` plugins (name, object) come first, in the given order: that is how the
    d-back style callbacks of ``WebSocketServer`` take precedence over installed plugins.
    ``DBACK_PLUGINS`` unset means every installed plugin, real providers first (by name) and
    embedded defaults such as the mock last; set to ``""`` it means none.
    """
    environ = os.environ if environ is None else environ
    if strict is None:
        strict = environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
    manager = _new_manager()
    records: list[PluginRecord] = []

    for name, plugin in in_process:
        record = PluginRecord(name=normalize_name(name), source="in-process", explicit=True)
        records.append(record)
        try:
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
            _fail(record, LookupError(f"no installed plugin is named {name!r}"), strict)
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
            _register(manager, record, _instantiate(loaded_object))
        except NotConfigured as reason:
            record.status = NOT_CONFIGURED
            record.error = str(reason)
            # Kept so its static ``register_commands`` can still add set-up commands.
            record.plugin = loaded_object
            log.info("plugin %s is not configured: %s", record.name, reason)
        except Exception as error:
            _fail(record, error, strict)
        loaded.append(record)

    if not explicit:
        # Embedded defaults go last so that a real provider, installed beside them, leads.
        loaded.sort(key=lambda record: record.fallback_only)
    records.extend(loaded)
    return PluginSet(records, manager)
