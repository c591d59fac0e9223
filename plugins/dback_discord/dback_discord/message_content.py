"""Whether the bot asks Discord for message text (the Message Content intent).

A verified bot in 100 or more guilds needs Discord's approval for Message Content, and many
never get it; Members and Presences are what the map needs. When Discord refuses the
intents (close code 4014) the plugin tries once more without Message Content: accepted, it
serves presences without chat and says so (one WARNING, and the health detail); refused
again, Members or Presences are missing too and the plugin fails with the portal steps.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

CHAT_OFF = (
    "chat off: Discord refused the Message Content intent (close code 4014); presences are "
    "served without chat. To show chat, switch on 'Message Content Intent' under Bot -> "
    "Privileged Gateway Intents in the developer portal (a bot in 100 or more guilds needs "
    "Discord's approval) and restart dback"
)


class MessageContent:
    """Asked for until Discord refuses the intents; then asked for again only after the
    intents are refused without it too (the portal may have changed meanwhile)."""

    def __init__(self) -> None:
        self.asked = True
        self._warned = False

    def refused(self) -> bool:
        """Discord refused the intents: True when the next attempt should go without
        Message Content, False when that was the attempt refused (nothing left to drop)."""
        if self.asked:
            self.asked = False
            log.info("discord: the gateway refused the intents; trying once without chat")
            return True
        self.asked = True
        return False

    def serving(self) -> None:
        """The bot is serving: warn once if that is without chat."""
        if not self.asked and not self._warned:
            self._warned = True
            log.warning("discord: %s", CHAT_OFF)

    def detail(self) -> str | None:
        return None if self.asked else CHAT_OFF
