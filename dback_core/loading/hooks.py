"""The one place that calls plugin hooks: order, awaiting, time limits, containment, merging.

pluggy calls implementations in reverse registration order and its ``firstresult`` cannot
see through coroutines, so the server never touches ``manager.hook`` directly. Instead this
facade walks the implementations in the configured plugin order, passes each only the
arguments it declares, awaits what is awaitable under a time limit, and treats a plugin that
raises or hangs as "no answer" - logged with the plugin's name, never fatal.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

from dback_core.loading.plugins import FAILED, NOT_CONFIGURED, PluginRecord, PluginSet
from dback_core.plugin import health
from dback_core.plugin.errors import AccessRefused, NotConfigured, SettingsError, Unavailable
from dback_core.plugin.hookspecs import INVALID, PASS, RULES
from dback_core.plugin.host import PluginHost
from dback_core.plugin.server_settings import Settings

log = logging.getLogger(__name__)


class CallObserver(Protocol):
    """Where each hook call's duration and failure are recorded (the server's metrics)."""

    def observe_call(self, plugin: str, hook: str, seconds: float, error: str | None) -> None: ...


def grant_of(plugin: str, grant: str) -> str:
    """How the core keeps a grant ``authorize`` returned: with the name of the plugin that
    gave it, so that one plugin's ``revoke`` never touches another's admissions."""
    return f"{plugin}:{grant}"


class _NoAnswer:
    """Marker for a call that failed or timed out (distinct from a plugin returning None)."""


NO_ANSWER = _NoAnswer()


class PluginHooks:
    """Typed, ordered, awaited access to the plugins' hooks."""

    def __init__(
        self, plugins: PluginSet, timeout: float = 10.0, metrics: CallObserver | None = None
    ) -> None:
        self.plugins = plugins
        self.timeout = timeout
        self.metrics = metrics
        self._implementations: dict[str, list[tuple[PluginRecord, Callable[..., Any]]]] = {}

    def implementations(self, hook: str) -> list[tuple[PluginRecord, Callable[..., Any]]]:
        """The active plugins implementing ``hook``, in order, with their functions.

        Cached per hook: it is asked for on every event, and the set of serving plugins
        changes only at startup, when plugins go on or off standby, or when a plugin's health
        turns to or from ``FAILED`` (each calls ``forget``). The embedded default's stepping
        aside is decided on what is loaded, not on health: a failed real provider must not
        bring fake guilds back.
        """
        found = self._implementations.get(hook)
        if found is None:
            found = [pair for pair in self._find_implementations(hook) if not pair[0].standby]
            if RULES[hook].skips_failed:
                found = [
                    (record, impl)
                    for record, impl in found
                    if record.health.status != health.FAILED
                ]
            self._implementations[hook] = found
        return found

    def forget(self) -> None:
        """Drop the cached implementations, after a plugin's status changed."""
        self._implementations.clear()

    def providers(self) -> list[PluginRecord]:
        """The plugins that list guilds here, whatever their health: the ones readiness
        waits for (plugins on standby do not serve this process)."""
        return [
            record
            for record, _ in self._find_implementations("get_server_data")
            if not record.standby
        ]

    def _find_implementations(self, hook: str) -> list[tuple[PluginRecord, Callable[..., Any]]]:
        caller = getattr(self.plugins.manager.hook, hook)
        functions = {impl.plugin_name: impl for impl in caller.get_hookimpls()}
        found = [
            (record, functions[record.name])
            for record in self.plugins.active
            if record.name in functions
        ]
        if RULES[hook].reverse:
            found.reverse()
        steps_aside = RULES[hook].fallback_steps_aside
        if steps_aside and any(not record.is_standby_fallback for record, _ in found):
            found = [(record, impl) for record, impl in found if not record.is_standby_fallback]
        return [(record, _bound(impl)) for record, impl in found]

    async def _call(
        self, record: PluginRecord, function: Callable[..., Any], hook: str, kwargs: dict[str, Any]
    ) -> Any:
        started = time.perf_counter()
        error: str | None = None
        try:
            result = function(**kwargs)
            if inspect.isawaitable(result):
                # Not ``wait_for``: on Python 3.11 it swallows a cancellation that arrives as
                # the hook finishes, and a server stopping then waits forever for the task
                # (an event source) that called it.
                async with asyncio.timeout(self.timeout):
                    result = await result
            return result
        except asyncio.CancelledError:
            raise
        except (NotConfigured, AccessRefused):
            raise
        except SettingsError:
            if hook == "startup":
                raise
            error = "exception"
            log.exception("plugin %s: %s raised", record.name, hook)
        except Unavailable as failure:
            error = "exception"
            level = logging.WARNING if record.health.serving else logging.DEBUG
            log.log(level, "plugin %s: %s failed: %s", record.name, hook, failure)
        except TimeoutError:
            error = "timeout"
            log.warning("plugin %s: %s took longer than %.1fs", record.name, hook, self.timeout)
        except Exception:
            error = "exception"
            log.exception("plugin %s: %s raised", record.name, hook)
        finally:
            if self.metrics is not None:
                self.metrics.observe_call(record.name, hook, time.perf_counter() - started, error)
        return NO_ANSWER

    async def call_each(self, hook: str, **kwargs: Any) -> list[tuple[PluginRecord, Any]]:
        """Call every implementation in order; failed calls yield ``NO_ANSWER``."""
        results = []
        for record, function in self.implementations(hook):
            results.append((record, await self._call(record, function, hook, kwargs)))
        return results

    async def startup(
        self,
        settings: Settings,
        host_for: Callable[[PluginRecord], PluginHost],
        only: Collection[PluginRecord] | None = None,
    ) -> None:
        """Start every plugin (or those ``only``) in order, each with its own ``host`` handle
        from ``host_for``; one that reports ``NotConfigured`` or a ``SettingsError`` leaves
        service (the second is fatal for ``dback serve``)."""
        for record, function in self._only(self.implementations("startup"), only):
            kwargs = {"settings": settings, "host": host_for(record)}
            try:
                result = await self._call(record, function, "startup", kwargs)
            except NotConfigured as reason:
                record.status = NOT_CONFIGURED
                record.error = str(reason)
                self._implementations.clear()
                log.info("plugin %s is not configured: %s", record.name, reason)
                continue
            except SettingsError as error:
                record.status = FAILED
                record.error = str(error)
                record.bad_setting = error.variable
                self._implementations.clear()
                log.error("plugin %s: %s", record.name, error)
                continue
            if result is NO_ANSWER:
                log.error("plugin %s did not start; its other hooks may not answer", record.name)

    async def shutdown(self, only: Collection[PluginRecord] | None = None) -> None:
        """Shut every serving plugin down, or those ``only`` (on standby already or not:
        a holder silences the plugins before it stops them)."""
        found = self.implementations("shutdown")
        if only is not None:
            found = self._only(self._find_implementations("shutdown"), only)
        for record, function in found:
            await self._call(record, function, "shutdown", {})

    @staticmethod
    def _only(
        found: list[tuple[PluginRecord, Callable[..., Any]]],
        only: Collection[PluginRecord] | None,
    ) -> list[tuple[PluginRecord, Callable[..., Any]]]:
        if only is None:
            return found
        return [(record, function) for record, function in found if record in only]

    async def event_applied(self, event: Any, origin: str | None) -> None:
        for record, function in self.implementations("event_applied"):
            await self._call(record, function, "event_applied", {"event": event, "origin": origin})

    async def get_server_data(self) -> list[tuple[str, dict[str, Any] | None]]:
        """Each plugin's guild map, in order, for the directory to merge.

        A plugin whose call failed or timed out is listed with None, so the directory can keep
        the guilds it served before instead of dropping them over one bad call.
        """
        answers: list[tuple[str, dict[str, Any] | None]] = []
        for record, result in await self.call_each("get_server_data", server_id=None):
            if result is NO_ANSWER:
                answers.append((record.name, None))
                continue
            if result is not None and _not_a_dict(record, "get_server_data", result):
                continue
            record.health.listed = True
            if result is not None:
                answers.append((record.name, result))
        return answers

    async def first_answer(self, hook: str, **kwargs: Any) -> tuple[str | None, Any, bool]:
        """Ask the plugins in order until one gives an answer ``hook``'s rule accepts: that
        answer as the rule turns it, the plugin that gave it, and whether any plugin before it
        failed (so an empty result may be a failure, not an empty guild).

        A None answer, or one the rule passes on (an empty dict), asks the next plugin; one
        of the wrong type is logged with the plugin's name and counts as failed. With no
        accepted answer the result is the rule's ``default``. ``AccessRefused`` raised by a
        plugin reaches the caller.
        """
        rule = RULES[hook]
        assert rule.accept is not None, f"{hook} is not a first-answer hook"
        failed = False
        for record, function in self.implementations(hook):
            result = await self._call(record, function, hook, kwargs)
            if result is NO_ANSWER:
                failed = True
                continue
            if result is None:
                continue
            value = rule.accept(result)
            if value is PASS:
                continue
            if value is INVALID:
                log.warning(
                    "plugin %s: %s returned %s, not %s; ignored",
                    record.name,
                    hook,
                    type(result).__name__,
                    rule.expected,
                )
                failed = True
                continue
            return record.name, value, failed
        # A copy: the caller may fill in what no plugin answered (a guild served empty).
        return None, copy.copy(rule.default), failed

    async def get_user_data(self, server_id: str) -> tuple[str | None, dict[str, Any], bool]:
        """The members of guild ``server_id`` from the first plugin with some, that plugin,
        and whether a plugin before it failed."""
        return await self.first_answer("get_user_data", server_id=server_id)

    async def authorize(
        self,
        server_id: str,
        server: dict[str, Any],
        credentials: dict[str, Any],
        address: str = "unknown",
    ) -> bool | str:
        """True (or, when the admitting plugin gave a grant, the grant as
        ``"<plugin>:<grant>"``) only when a plugin admits the client; no decision at all
        means refused. The plugin's name keeps two plugins' grants apart."""
        plugin, admitted, _ = await self.first_answer(
            "authorize",
            server_id=server_id,
            server=server,
            credentials=credentials,
            address=address,
        )
        if isinstance(admitted, str):
            return grant_of(plugin or "", admitted)
        return bool(admitted)

    async def get_client_id(self, server_id: str) -> str | None:
        client_id: str | None
        _, client_id, _ = await self.first_answer("get_client_id", server_id=server_id)
        return client_id

    async def event_sources(
        self, only: Collection[PluginRecord] | None = None
    ) -> list[tuple[PluginRecord, Callable[[], Any]]]:
        """Every event-source factory (of the plugins ``only``) with the plugin that owns it."""
        sources = []
        for record, function in self._only(self.implementations("event_sources"), only):
            result = await self._call(record, function, "event_sources", {})
            if result is NO_ANSWER or result is None:
                continue
            for factory in result:
                if callable(factory):
                    sources.append((record, factory))
                else:
                    log.warning("plugin %s: event source %r is not callable", record.name, factory)
        return sources

    async def worker_sharing(self) -> tuple[str | None, bool | str]:
        """The plugin that shares one world between ``--workers`` processes and True, or the
        first that would but says what its settings lack and that text; (None, False) when
        no active plugin shares the world."""
        plugin, answer, _ = await self.first_answer("worker_sharing")
        return plugin, answer if answer is not None else False

    def register_commands(self, cli: Any) -> None:
        """Add every plugin's commands, including those of plugins not configured yet.

        A plugin whose constructor raised ``NotConfigured`` still gets its commands in when
        ``register_commands`` is a static or class method: setting a plugin up (``dback
        postgres migrate``) must not require it to be set up already.
        """
        for record, function in self.implementations("register_commands"):
            try:
                function(cli=cli)
            except Exception:
                log.exception("plugin %s: register_commands raised", record.name)
        for record in self.plugins.records:
            if record.status != NOT_CONFIGURED or record.plugin is None:
                continue
            static = _callable_without_instance(record.plugin, "register_commands")
            if static is None:
                continue
            try:
                static(cli=cli)
            except Exception:
                log.exception("plugin %s: register_commands raised", record.name)


def _not_a_dict(record: PluginRecord, hook: str, result: Any) -> bool:
    """True, after a warning naming the plugin, when its answer is not a dict."""
    if isinstance(result, dict):
        return False
    log.warning(
        "plugin %s: %s returned %s, not a dict; ignored", record.name, hook, type(result).__name__
    )
    return True


def _callable_without_instance(plugin: Any, hook: str) -> Callable[..., Any] | None:
    """``plugin``'s implementation of ``hook`` when it can be called with no instance: a
    module's function, or a class's static or class method; else None."""
    function: Callable[..., Any] | None = getattr(plugin, hook, None)
    if function is None or not hasattr(function, "dback_impl"):
        return None
    if inspect.isclass(plugin) and not isinstance(
        inspect.getattr_static(plugin, hook), staticmethod | classmethod
    ):
        return None
    return function


def _bound(impl: Any) -> Callable[..., Any]:
    """A callable taking keyword arguments and passing on only those the plugin declares."""
    function = impl.function
    argnames = tuple(impl.argnames) + tuple(getattr(impl, "kwargnames", ()))

    def call(**kwargs: Any) -> Any:
        return function(**{name: kwargs[name] for name in argnames if name in kwargs})

    return call
