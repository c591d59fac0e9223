"""The plugin contract: every hook a dback plugin may implement.

A plugin implements a hook by defining a function (or method) of the same name decorated with
``dback_core.hookimpl``. It may accept any subset of the arguments listed here, and it may be
``def`` or ``async def``: the core awaits whatever needs awaiting. Hooks are called in the
configured plugin order (``DBACK_PLUGINS``), never in pluggy's registration order, and a plugin
that raises or times out counts as "no answer" for that call.

How the plugins' answers to a hook combine, in which order they are asked, whether an
embedded default steps aside and whether a failed plugin is asked at all is written once,
as a ``@rule`` on the hook's spec: the hook caller (``dback_core.loading.hooks``), ``dback plugins``
(``PluginSet.describe``) and docs/plugins.md all read it from here.

docs/plugins.md is the long-form reference; a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pluggy

from dback_core.plugin.host import PluginHost
from dback_core.plugin.server_settings import Settings

PROJECT_NAME = "dback"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: Every plugin is called; each one's answer is used on its own.
EACH = "each"
#: Every plugin is called; the answers are merged into one.
MERGE = "merge"
#: Plugins are asked in order until one gives an answer the rule accepts.
FIRST = "first answer"
#: Every plugin is told; what it returns is ignored.
OBSERVE = "observe"


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: What a first-answer rule's ``accept`` returns for an answer that leaves the question to
#: the next plugin (an empty dict), and for one of the wrong type (warned about, skipped).
PASS = _Marker("PASS")
INVALID = _Marker("INVALID")


@dataclass(frozen=True)
class HookRule:
    """How the core calls one hook and combines the plugins' answers."""

    combine: str
    #: The rule in a sentence, as ``dback plugins --json`` shows it under ``merge``.
    text: str
    #: Called in reverse plugin order (the first plugin started is the last stopped).
    reverse: bool = False
    #: An embedded default (the mock) answers only when no other active plugin implements it.
    fallback_steps_aside: bool = False
    #: A plugin that reported itself ``failed`` is not asked: its data is not served.
    skips_failed: bool = False
    #: For ``FIRST``: an answer turned into the value used, or ``PASS`` / ``INVALID``.
    accept: Callable[[Any], Any] | None = None
    #: For ``FIRST``: what ``accept`` wants, named in the warning about another type.
    expected: str = ""
    #: For ``FIRST``: the result when no plugin gives an accepted answer.
    default: Any = None

    def summary(self) -> str:
        """Every part of the rule in one line, as docs/plugins.md states it for the hook."""
        parts = [f"{self.combine}: {self.text}"]
        parts.append("called in reverse plugin order" if self.reverse else "called in plugin order")
        if self.fallback_steps_aside:
            parts.append("an embedded default answers only when no other plugin implements it")
        if self.skips_failed:
            parts.append("a plugin that reported `failed` is not asked")
        return "; ".join(parts)


_F = TypeVar("_F", bound=Callable[..., Any])


def rule(combine: str, text: str, **options: Any) -> Callable[[_F], _F]:
    """State the ``HookRule`` of the hook spec below it."""

    def mark(spec: _F) -> _F:
        spec.dback_rule = HookRule(combine, text, **options)  # type: ignore[attr-defined]
        return spec

    return mark


def _members(answer: Any) -> Any:
    if not isinstance(answer, dict):
        return INVALID
    return answer if answer else PASS


def _decision(answer: Any) -> Any:
    """True, False, or a non-empty grant label (an admission the plugin may revoke)."""
    if isinstance(answer, bool) or (isinstance(answer, str) and answer):
        return answer
    return INVALID


def _sharing(answer: Any) -> Any:
    """True, or a non-empty str saying what this plugin's settings lack."""
    if answer is True or (isinstance(answer, str) and answer):
        return answer
    return PASS if answer is False else INVALID


def _client_id(answer: Any) -> Any:
    if isinstance(answer, bool) or not isinstance(answer, str | int):
        return INVALID
    return str(answer) if str(answer) else PASS


@rule(EACH, "every plugin is started; NotConfigured or SettingsError takes it out of service")
@hookspec
def startup(settings: Settings, host: PluginHost) -> None:
    """Prepare the plugin before the server listens: open pools, log a bot in.

    Called once per server start, in plugin order. ``settings`` is the server's
    ``dback_core.plugin.server_settings.Settings`` (read-only); ``host`` is the plugin's
    ``dback_core.plugin.host.PluginHost``, the typed handle through which it publishes
    events, requests refreshes, reads the loaded guilds and reports its own health - keep it
    on ``self``. Raising ``dback_core.NotConfigured`` marks the plugin "not configured" and
    takes it out of service quietly; raising ``dback_core.SettingsError`` marks it failed and
    makes ``dback serve`` exit naming the variable; any other failure is logged and the
    plugin stays loaded, its other hooks answering as they can.
    """


@rule(EACH, "every plugin is stopped, whatever the others do", reverse=True)
@hookspec
def shutdown() -> None:
    """Release what ``startup`` acquired. Called once when the server stops, in reverse order."""


@rule(
    MERGE,
    "union of every plugin's guilds; the earlier plugin wins a key",
    fallback_steps_aside=True,
    skips_failed=True,
)
@hookspec
def get_server_data(server_id: str | None) -> dict[str, dict[str, Any]] | None:
    """Return the guilds this plugin serves, keyed by Discord snowflake, or None for "none".

    Each record: ``id`` (short id used by clients), ``name``, ``passworded``, and optionally
    ``is_default`` (or ``default``), ``enabled`` (False hides the guild), ``password`` (a
    secret compared by the core, never sent) and ``access_version`` (non-secret text that
    changes when access rules the record does not show change, voiding earlier admissions,
    e.g. a hash of a password hash ``authorize`` checks). The core calls it with
    ``server_id=None`` to list every guild. Lists from all plugins are merged; an earlier
    plugin wins on a key.
    """


@rule(
    FIRST,
    "the first plugin in order with a non-empty answer",
    fallback_steps_aside=True,
    skips_failed=True,
    accept=_members,
    expected="a dict",
    default={},
)
@hookspec
def get_user_data(server_id: str) -> dict[str, dict[str, Any]] | None:
    """Return the members of guild ``server_id`` keyed by uid, or None when it is not ours.

    Each record: ``uid``, ``username``, ``status`` (online/idle/dnd/offline) and ``roleColor``
    (``#rrggbb`` or False). The first plugin in order with a non-empty answer provides the
    guild (fallback), and its event sources keep that guild current.
    """


@rule(EACH, "every plugin's sources run side by side", fallback_steps_aside=True)
@hookspec
def event_sources() -> list[Any] | None:
    """Return callables that each produce an async iterator of ``dback_core.plugin.events`` values.

    The core runs each one as a task, applies what it yields, and restarts it with backoff
    when it ends or raises. This is how live presence, membership, chat messages and
    refreshes enter the server.
    """


@rule(OBSERVE, "every plugin is told", fallback_steps_aside=True)
@hookspec
def event_applied(event: Any, origin: str | None) -> None:
    """Observe a change after the core applied it: a presence, message or client-id event
    that altered a loaded guild, or a ``Refresh``.

    ``origin`` is the name of the plugin whose event source produced it, or None for events
    from the d-back API. Called in plugin order on the event loop, so keep it quick (queue
    slow work). Events a plugin injects with ``host.publish(..., relay=False)`` are not
    reported, which is how a bus relays other processes' events without echoing them back.
    """


@rule(
    FIRST,
    "the first plugin that returns True, False or a grant decides; none: refused",
    fallback_steps_aside=True,
    skips_failed=True,
    accept=_decision,
    expected="a bool or a grant (non-empty str)",
    default=False,
)
@hookspec
def authorize(
    server_id: str, server: dict[str, Any], credentials: dict[str, Any], address: str
) -> bool | str | None:
    """Decide whether a client may see passworded guild ``server_id``.

    ``credentials`` holds what the client sent: ``password``, ``discordToken``,
    ``discordUser``. ``address`` is the client's address as dback counts it (an IPv4 address,
    or an IPv6 /64 such as ``2001:db8:1:2::/64``): the key to share costly work fairly between
    clients (``dback_core.plugin.fairness``). Return True to admit, False to refuse, None to
    leave the decision to the next plugin. When no plugin decides, the client is refused. Raise
    ``dback_core.AccessRefused("message")`` to refuse with a message the client can act on
    (then no wrong password is counted against the client).

    A check with a ``password`` is only asked for when the core's guessing throttle allows
    it, and a False answer to one counts as a wrong password for that address and guild.

    A non-empty str admits too, under that grant (say ``discord-user:1234``): the plugin can
    later take out every viewer admitted under it with ``PluginHost.revoke``, when it learns
    the admission no longer holds (the user left the guild).
    """


@rule(
    FIRST,
    "the first non-empty answer",
    fallback_steps_aside=True,
    skips_failed=True,
    accept=_client_id,
    expected="a str",
)
@hookspec
def get_client_id(server_id: str) -> str | None:
    """Return the Discord OAuth client id for guild ``server_id``, or None.

    The first non-empty answer in plugin order is sent as ``clientId`` in ``server-join``.
    """


@rule(
    FIRST,
    "the first plugin that shares the world, or says what its settings lack",
    accept=_sharing,
    expected="True or a str",
)
@hookspec
def worker_sharing() -> bool | str | None:
    """Say whether this plugin shares one world between the processes of ``dback serve
    --workers N`` (a bus every worker reads and writes, one elected worker running the
    providers).

    Return True when it does with the current settings; a str completing "needs ..." when it
    would but its settings do not allow it (``"DBACK_REDIS_ROLE=auto, not 'edge'"``); None or
    False when it shares nothing. Without an active plugin answering True, ``--workers``
    above 1 refuses to start.
    """


@rule(EACH, "every plugin adds its commands, a not-configured one too when static")
@hookspec
def register_commands(cli: Any) -> None:
    """Add sub-commands to the ``dback`` command line; ``cli`` is its ``click.Group``."""


#: Every hook's rule, by hook name.
RULES: dict[str, HookRule] = {
    name: value.dback_rule
    for name, value in list(globals().items())
    if hasattr(value, "dback_rule")
}
