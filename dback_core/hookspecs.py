"""The plugin contract: every hook a dback plugin may implement.

A plugin implements a hook by defining a function (or method) of the same name decorated with
``dback_core.hookimpl``. It may accept any subset of the arguments listed here, and it may be
``def`` or ``async def``: the core awaits whatever needs awaiting. Hooks are called in the
configured plugin order (``DBACK_PLUGINS``), never in pluggy's registration order, and a plugin
that raises or times out counts as "no answer" for that call.

docs/plugins.md is the long-form reference; a test keeps the two in step.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT_NAME = "dback"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def startup(settings: Any, server: Any) -> None:
    """Prepare the plugin before the server listens: open pools, log a bot in.

    Called once per server start, in plugin order. ``settings`` is the server's
    ``dback_core.config.Settings``; ``server`` is the ``dback_core.server.DbackServer`` itself,
    for plugins that feed events in from outside the event-source model (a message bus calls
    ``server.publish(event, origin, relay=False)``), and any plugin may keep it to report its
    health with ``server.report_health(self, status, reason)``. Raising
    ``dback_core.plugins.NotConfigured`` marks the plugin "not configured" and takes it out of
    service quietly; raising ``dback_core.SettingsError`` marks it failed and makes ``dback
    serve`` exit naming the variable; any other failure is logged and the plugin stays loaded,
    its other hooks answering as they can.
    """


@hookspec
def shutdown() -> None:
    """Release what ``startup`` acquired. Called once when the server stops, in reverse order."""


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


@hookspec
def get_user_data(server_id: str) -> dict[str, dict[str, Any]] | None:
    """Return the members of guild ``server_id`` keyed by uid, or None when it is not ours.

    Each record: ``uid``, ``username``, ``status`` (online/idle/dnd/offline) and ``roleColor``
    (``#rrggbb`` or False). The first plugin in order with a non-empty answer provides the
    guild (fallback), and its event sources keep that guild current.
    """


@hookspec
def event_sources() -> list[Any] | None:
    """Return callables that each produce an async iterator of ``dback_core.events`` values.

    The core runs each one as a task, applies what it yields, and restarts it with backoff
    when it ends or raises. This is how live presence, membership, chat messages and
    refreshes enter the server.
    """


@hookspec
def event_applied(event: Any, origin: str | None) -> None:
    """Observe a change after the core applied it: a presence, message or client-id event
    that altered a loaded guild, or a ``Refresh``.

    ``origin`` is the name of the plugin whose event source produced it, or None for events
    from the d-back API. Called in plugin order on the event loop, so keep it quick (queue
    slow work). Events a plugin injects with ``server.publish(..., relay=False)`` are not
    reported, which is how a bus relays other processes' events without echoing them back.
    """


@hookspec
def authorize(server_id: str, server: dict[str, Any], credentials: dict[str, Any]) -> bool | None:
    """Decide whether a client may see passworded guild ``server_id``.

    ``credentials`` holds what the client sent: ``password``, ``discordToken``,
    ``discordUser``. Return True to admit, False to refuse, None to leave the decision to the
    next plugin. When no plugin decides, the client is refused. Raise
    ``dback_core.AccessRefused("message")`` to refuse with a message the client can act on.
    """


@hookspec
def get_client_id(server_id: str) -> str | None:
    """Return the Discord OAuth client id for guild ``server_id``, or None.

    The first non-empty answer in plugin order is sent as ``clientId`` in ``server-join``.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add sub-commands to the ``dback`` command line; ``cli`` is its ``click.Group``."""
