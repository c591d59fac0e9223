"""What of discord.py's own logging reaches dback's log.

Two rules. Nothing below INFO: discord.py logs whole gateway payloads and REST bodies at
DEBUG - message text (also from ignored channels), member lists. And not its voice
warnings: every start of a bot without PyNaCl or davey logs "PyNaCl is not installed, voice
will NOT be supported", but dback never joins a voice channel, so the warning asks the
operator to fix nothing. Those two lines go to dback-discord's DEBUG instead; every other
warning of discord.py is kept.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

#: Nothing of discord.py's below this level is let through.
DISCORD_LOG_FLOOR = logging.INFO
#: The logger that warns about voice support when a client is created.
VOICE_WARNING_LOGGER = "discord.client"
#: How those warnings end (discord.py 2.x): one per missing voice library.
VOICE_WARNING_END = "voice will NOT be supported"


class VoiceWarnings(logging.Filter):
    """Moves discord.py's "voice will NOT be supported" warnings to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.endswith(VOICE_WARNING_END):
            return True
        log.debug("discord.py: %s (dback uses no voice)", message)
        return False


def quiet_discord_logs() -> None:
    """Keep discord.py's loggers at INFO or above, whatever ``DBACK_LOG_LEVEL`` says, and
    its voice warnings out of the log; once per process, however many bots start."""
    library = logging.getLogger("discord")
    if library.getEffectiveLevel() < DISCORD_LOG_FLOOR:
        library.setLevel(DISCORD_LOG_FLOOR)
    client = logging.getLogger(VOICE_WARNING_LOGGER)
    if not any(isinstance(existing, VoiceWarnings) for existing in client.filters):
        client.addFilter(VoiceWarnings())
