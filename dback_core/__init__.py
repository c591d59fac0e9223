"""dback: a real-time presence server for the d-zone client, built from plugins.

Plugin authors need only ``hookimpl``, the event types, the ``PluginHost`` handle their
``startup`` receives, ``Backoff`` for their retry loops, ``Setting`` to declare their settings
(``dback_core.settings``), and the ways to say a plugin's settings are missing
(``NotConfigured``) or wrong (``SettingsError``)::

    from dback_core import hookimpl, PluginHost, Presence, Setting, SettingsError

docs/plugins.md ("The public API") lists every module a plugin may import; the rest of
``dback_core`` is the server's own and may change in any release.
"""

from dback_core.backoff import Backoff
from dback_core.events import ClientIdUpdate, Event, Message, Presence, Refresh
from dback_core.hookspecs import hookimpl
from dback_core.host import PluginHost
from dback_core.plugins import AccessRefused, NotConfigured
from dback_core.settings import Setting, SettingsError
from dback_core.version import __version__

__all__ = [
    "AccessRefused",
    "Backoff",
    "ClientIdUpdate",
    "Event",
    "Message",
    "NotConfigured",
    "PluginHost",
    "Presence",
    "Refresh",
    "Setting",
    "SettingsError",
    "__version__",
    "hookimpl",
]
