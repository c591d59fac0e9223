"""What each plugin says about its own health while the server runs, and what follows from it.

Loading tells whether a plugin could be imported and configured; it cannot tell that a
database went away or that Discord revoked the bot's token an hour later. A plugin reports
that itself through its host (``host.report_health(status, reason)``), and the rest of the
server reads it from here:

``SERVING``
    Healthy. The default for every active plugin that has not reported otherwise.
``UNAVAILABLE``
    The backing service cannot be reached right now and the plugin is retrying by itself.
    Its last good data stays served (a database blip must not empty the world), but
    ``/readyz`` answers 503 and the status is shown with the reason.
``FAILED``
    The plugin cannot serve until the operator acts (or until it reports ``SERVING``
    again). Its guilds are withdrawn: a frozen world must never be presented as live.

A hook that cannot answer because its service is away raises ``errors.Unavailable``: the
call counts as failed (the plugin's last answer is kept) without the traceback of a bug.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dback_core.plugin.redaction import redact

log = logging.getLogger(__name__)

SERVING = "serving"
UNAVAILABLE = "unavailable"
FAILED = "failed"

STATUSES = (SERVING, UNAVAILABLE, FAILED)


@dataclass
class Health:
    """One plugin's runtime health: its status, why, and whether it has listed its guilds."""

    status: str = SERVING
    reason: str | None = None
    #: True once a ``get_server_data`` call of this plugin answered (with guilds or None).
    listed: bool = False

    @property
    def serving(self) -> bool:
        return self.status == SERVING

    def change(self, plugin: str, status: str, reason: str | None) -> bool:
        """Record a report; True when the status changed (reason-only changes are kept
        quietly, so a plugin may refresh its reason on every retry without log spam)."""
        if status not in STATUSES:
            raise ValueError(f"health status must be one of {', '.join(STATUSES)}, not {status!r}")
        changed = status != self.status
        self.status = status
        # Redacted once here, so /readyz, /api/plugins, /metrics and the log all show it so.
        reason = redact(reason) if reason else reason
        self.reason = reason if status != SERVING else None
        if changed:
            _log_change(plugin, status, reason)
        return changed


def _log_change(plugin: str, status: str, reason: str | None) -> None:
    suffix = f": {reason}" if reason else ""
    if status == FAILED:
        log.error("plugin %s failed; its guilds are withdrawn%s", plugin, suffix)
    elif status == UNAVAILABLE:
        log.warning("plugin %s is unavailable; serving its last data%s", plugin, suffix)
    else:
        log.info("plugin %s is serving again", plugin)
