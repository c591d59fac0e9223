"""dback: a real-time presence server for the d-zone client, built from plugins.

Plugin authors need only ``hookimpl`` and the event types::

    from dback_core import hookimpl, Presence
"""

from dback_core.events import ClientIdUpdate, Event, Message, Presence, Refresh
from dback_core.hookspecs import hookimpl
from dback_core.plugins import AccessRefused, NotConfigured
from dback_core.version import __version__

__all__ = [
    "AccessRefused",
    "ClientIdUpdate",
    "Event",
    "Message",
    "NotConfigured",
    "Presence",
    "Refresh",
    "__version__",
    "hookimpl",
]
