"""Who may see a guild: admitting a viewer, and taking viewers out when the rules change.

An admission is remembered on the viewer with the rules it was made under
(``ServerInfo.access``), so a new password or login rule voids it without anyone keeping a
list of what to revoke: ``may_view`` compares, and ``eject`` takes out whoever no longer
passes when the directory installs a guild list that changed some guild's rules.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from typing import Any

from dback_core.loading.hooks import PluginHooks
from dback_core.plugin.errors import AccessRefused
from dback_core.serving.guessing import LOCKOUT, LOCKOUT_AFTER, Guess, GuessThrottle
from dback_core.wire import protocol
from dback_core.wire.fanout import Fanout, Viewer
from dback_core.world.records import ServerInfo

log = logging.getLogger(__name__)


def may_view(viewer: Viewer, info: ServerInfo) -> bool:
    """Whether ``viewer`` is admitted to ``info`` under its current rules."""
    return not info.passworded or viewer.authorized.get(info.key) == info.access


class Access:
    """Admission to guilds for one server: its fan-out, its plugins' ``authorize``, its
    current guild list (read through ``servers`` at each use, as the list is replaced), and
    the throttle every password check passes first."""

    def __init__(
        self,
        fanout: Fanout,
        hooks: PluginHooks,
        servers: Callable[[], Mapping[str, ServerInfo]],
        guesses: GuessThrottle | None = None,
    ) -> None:
        self.fanout = fanout
        self.hooks = hooks
        self.servers = servers
        self.guesses = guesses or GuessThrottle(LOCKOUT_AFTER, LOCKOUT)

    async def admit(self, viewer: Viewer, info: ServerInfo, data: dict[str, Any]) -> str | None:
        """None when the viewer may see ``info``, else the error to show. A password the
        guild's record carries is compared here; anything else is for the plugins.

        Every password check - compared here or by a plugin's ``authorize`` - is first put
        to the guessing throttle (``dback_core.serving.guessing``), so a guesser's next try is
        refused before any work is done, and only its own address is slowed."""
        if may_view(viewer, info):
            return None
        address = viewer.address
        password = data.get("password")
        guess: Guess | None = None
        if password:
            allowed = self.guesses.begin(address, info.key)
            if isinstance(allowed, str):
                return allowed
            guess = allowed
        try:
            refusal, wrong = await self._check(viewer, info, data, address)
        except BaseException:
            if guess is not None:
                guess.abandoned()
            raise
        if guess is not None:
            if refusal is None:
                guess.succeeded()
            elif wrong:
                guess.failed()
            else:
                guess.abandoned()  # no check was made (busy, unavailable)
        return refusal

    async def _check(
        self, viewer: Viewer, info: ServerInfo, data: dict[str, Any], address: str
    ) -> tuple[str | None, bool]:
        """The refusal (None: admitted), and whether the credentials were judged wrong -
        as opposed to not checked at all (a plugin's ``AccessRefused``: busy, unavailable)."""
        password = data.get("password")
        if info.password is not None and password:
            expected = info.password.encode("utf-8", "surrogatepass")
            if hmac.compare_digest(password.encode(), expected):
                viewer.authorized[info.key] = info.access
                return None, False
            return protocol.LOGIN_REFUSED, True
        credentials = {
            "password": password,
            "discordToken": data.get("discordToken"),
            "discordUser": data.get("discordUser"),
        }
        if not any(credentials.values()):
            return protocol.LOGIN_REQUIRED, False
        try:
            admitted = await self.hooks.authorize(
                info.key, info.for_plugins(), credentials, address
            )
        except AccessRefused as refusal:
            return str(refusal) or protocol.LOGIN_REFUSED, False
        if admitted:
            viewer.authorized[info.key] = info.access
            _remember_grant(viewer, info.key, admitted if isinstance(admitted, str) else None)
            return None, False
        return protocol.LOGIN_REFUSED, True

    def revoke(self, key: str, grant: str, message: str) -> int:
        """Void every admission to guild ``key`` made under ``grant``; viewers watching it are
        taken out at once and told ``message`` with an ``error``. Returns how many viewers
        lost the admission.

        Runs synchronously, like ``eject``: nothing of the guild reaches them afterwards.
        Viewers admitted to the guild but watching another one lose the admission too, so
        switching back asks the plugins again. Looks at every connection: plugins call it
        only for an admission they know they granted.
        """
        revoked = 0
        ejected = []
        for viewer in list(self.fanout.viewers.values()):
            if viewer.grants is None or viewer.grants.get(key) != grant:
                continue
            del viewer.grants[key]
            viewer.authorized.pop(key, None)
            revoked += 1
            if viewer.guild == key:
                self.fanout.leave(viewer)
                ejected.append(viewer.connection)
        if ejected:
            self.fanout.deliver(ejected, protocol.error(message).encode())
        if revoked:
            log.info("guild %s: an admission revoked; %d viewers taken out", key, len(ejected))
        return revoked

    def eject(self, keys: list[str]) -> None:
        """Take every viewer out of these guilds (removed from the list, or with new access
        rules) unless it is still admitted, and tell it with an ``error``.

        Runs synchronously as the new guild list is installed, so no presence, chat or
        world of the guild can reach such a viewer afterwards. The error goes through the
        fan-out, after anything queued for the viewer before the change.
        """
        servers = self.servers()
        for key in keys:
            info = servers.get(key)
            ejected = []
            for viewer in self.fanout.watchers(key):
                if info is not None and may_view(viewer, info):
                    continue
                viewer.authorized.pop(key, None)
                _remember_grant(viewer, key, None)
                self.fanout.leave(viewer)
                ejected.append(viewer.connection)
            if not ejected:
                continue
            reason = protocol.UNKNOWN_SERVER if info is None else protocol.ACCESS_CHANGED
            self.fanout.deliver(ejected, protocol.error(reason).encode())
            log.info(
                "guild %s %s: %d viewers taken out",
                key,
                "left the list" if info is None else "changed its access rules",
                len(ejected),
            )


def _remember_grant(viewer: Viewer, key: str, grant: str | None) -> None:
    """Note (or, for None, forget) the grant ``viewer`` holds guild ``key`` under."""
    if grant is not None:
        if viewer.grants is None:
            viewer.grants = {}
        viewer.grants[key] = grant
    elif viewer.grants is not None:
        viewer.grants.pop(key, None)
