"""dback: a real-time presence server for the d-zone client, built from plugins.

Plugin authors need only ``hookimpl``, the event types, and the two ways to say a plugin's
settings are missing (``NotConfigured``) or wrong (``SettingsError``)::

    from dback_core import hookimpl, Presence, SettingsError
"""

from dback_core.events import ClientIdUpdate, Event, Message, Presence, Refresh
from dback_core.hookspecs import hookimpl
from dback_core.plugins import AccessRefused, NotConfigured, SettingsError
from dback_core.version import __version__

__all__ = [
    "AccessRefused",
    "ClientIdUpdate",
    "Event",
    "Message",
    "NotConfigured",
    "Presence",
    "Refresh",
    "SettingsError",
    "__version__",
    "hookimpl",
]
