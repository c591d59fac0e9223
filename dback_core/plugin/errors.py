"""Every exception type dback defines, in one module with one base class.

The ones a plugin raises (``NotConfigured``, ``SettingsError``, ``AccessRefused``) are also
exported from ``dback_core``; the others are what the core raises to its callers (the
command line, a test's ``Launcher``) and are caught by type, never by message.
"""

from __future__ import annotations


class DbackError(Exception):
    """The base of every exception dback defines."""


class SettingsError(DbackError, ValueError):
    """A setting has a value that cannot be used: ``dback serve`` stops and names it.

    Raised by the core and by plugins (from the plugin's constructor or ``startup``) for a
    value that is set but wrong - ``DBACK_MOCK_INTERVAL=fast``, a DSN with the wrong scheme.
    Unlike ``NotConfigured`` (nothing set, so the plugin stays out of the way), a wrong value
    is a mistake the operator must see before anything is served, so it is fatal whether the
    plugin was named in ``DBACK_PLUGINS`` or loaded by default. ``message`` continues the
    variable's name: ``SettingsError("DBACK_PORT", "must be a number, got 'abc'")``.
    """

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable} {message}")
        self.variable = variable
        self.message = message


class PluginError(DbackError, RuntimeError):
    """A plugin could not be loaded and strict mode is on, or the configuration is invalid."""


class NotConfigured(DbackError):
    """Raised by a plugin class's constructor (or its ``startup``) when it lacks its settings.

    The plugin is then listed as "not configured" with the message - not as failed - and
    the embedded default keeps serving, so installing a provider never empties the world
    before it is set up.
    """


class AccessRefused(DbackError):
    """Raised by an ``authorize`` implementation to refuse a client with its own message.

    Returning False refuses with the generic "authentication failed"; raising this shows the
    client ``str(error)`` instead, for refusals the client can act on ("login is busy, try
    again"). The message goes to the client as written, so it must never hold a credential.
    """


class ScaffoldError(DbackError, ValueError):
    """The name or the target directory cannot be used; the message says why."""
