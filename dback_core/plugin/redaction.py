"""Masking secrets in text that may reach a log line, ``dback plugins`` or ``/api/plugins``.

The server never logs credentials on purpose, but a plugin's exception may carry a DSN with
a password or a bot token, and a setting's value may be a URL with one: both pass through
``redact`` before anyone sees them.
"""

from __future__ import annotations

import re

#: ``scheme://user:secret@host`` - the secret part of URLs and DSNs.
_URL_PASSWORD = re.compile(r"(?P<keep>[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@", re.IGNORECASE)
#: ``password=...``, ``"discordToken": "..."``, ``token: ...`` and the like.
_KEY_VALUE = re.compile(
    r"(?P<keep>[\"']?\b[\w-]*(?:password|passwd|token|secret)[\w-]*\b[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<value>[^\s\"',;}&]+)",
    re.IGNORECASE,
)
#: A Discord bot token: three base64url parts separated by dots.
_DISCORD_TOKEN = re.compile(r"\b[\w-]{23,28}\.[\w-]{6,7}\.[\w-]{27,}\b")
REDACTED = "***"


def redact(text: str) -> str:
    """``text`` with passwords in URLs, ``key=value`` secrets and Discord tokens masked."""
    text = _URL_PASSWORD.sub(lambda m: m["keep"] + REDACTED + "@", text)
    text = _KEY_VALUE.sub(lambda m: m["keep"] + REDACTED, text)
    return _DISCORD_TOKEN.sub(REDACTED, text)
