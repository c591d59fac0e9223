"""dback: a real-time presence server for the d-zone client, built from plugins.

Plugin authors need only ``hookimpl``, the event types, the ``PluginHost`` handle their
``startup`` receives, ``Backoff`` for their retry loops, ``Setting`` to declare their settings,
and the ways to say a plugin's settings are missing (``NotConfigured``) or wrong
(``SettingsError``)::

    from dback_core import hookimpl, PluginHost, Presence, Setting, SettingsError

Everything a plugin may import lives in ``dback_core.plugin`` (docs/plugins.md, "The public
API", lists its modules); the other packages - ``wire``, ``world``, ``loading``, ``serving``,
``ops`` - are the server's own and may change in any release.
"""

from dback_core.plugin.backoff import Backoff
from dback_core.plugin.errors import AccessRefused, NotConfigured, SettingsError
from dback_core.plugin.events import ClientIdUpdate, Event, Message, Presence, Refresh
from dback_core.plugin.hookspecs import hookimpl
from dback_core.plugin.host import PluginHost
from dback_core.plugin.settings import Setting
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
