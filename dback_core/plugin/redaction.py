"""Masking secrets in text that may reach a log line, ``dback plugins`` or ``/api/plugins``.

The server never logs credentials on purpose, but a library's exception may quote a URL, a
plugin's error may carry a DSN, and a client may send a bot token: everything bound for an
operator passes through ``redact`` first. Two layers:

- **Known secrets, exactly.** Every secret the process was configured with - a setting
  declared ``secret`` or ``url`` (``dback_core.plugin.settings``) registers its value, or
  the secret parts ``dback_core.plugin.credentials`` finds in it, when it is read - is
  replaced wherever it appears: as written, percent-decoded, percent-encoded (both ways
  URLs write a space) and as Python's ``repr`` and JSON write it inside quotes. A password
  with a space or ``@`` is therefore masked whole, whatever quoted it.
- **Patterns, as a safety net** for secrets no setting declared: a URL's user-info password
  (``scheme://user:***@host``), ``password=...``/``"token": "..."`` pairs, and Discord bot
  tokens (which clients send).

Secrets shorter than ``SHORTEST`` characters are not registered: masking every ``abc`` in
every line would garble the log, and so short a password falls to guessing anyway.
"""

from __future__ import annotations

import json
import re
import threading
from urllib.parse import quote, quote_plus, unquote

from dback_core.plugin.credentials import MASK, mask_userinfo

REDACTED = MASK
#: Secrets shorter than this are not masked by value (see the module's docstring).
SHORTEST = 4

#: ``password=...``, ``"discordToken": "..."``, ``token: ...`` and the like: the value is
#: quoted (masked to its closing quote) or runs to a space or separator. The name ends with
#: the secret word (not ``InvalidPasswordError: ...``), and is not a URL's user name
#: (``postgresql://app_token:...@``): its password is the user-info net's.
_KEY_VALUE = re.compile(
    r"(?<!://)(?P<keep>[\"']?\b[\w-]*?(?:password|passwd|token|secret)\d*\b[\"']?\s*[:=]\s*)"
    r"(?:(?P<quote>[\"'])(?P<quoted>(?:\\.|(?!(?P=quote)).)*)(?P=quote)|(?P<value>[^\s\"',;}&]+))",
    re.IGNORECASE,
)
#: A Discord bot token: three base64url parts separated by dots.
_DISCORD_TOKEN = re.compile(r"\b[\w-]{23,28}\.[\w-]{6,7}\.[\w-]{27,}\b")

_lock = threading.Lock()
_known: set[str] = set()
#: Every known secret in every written form, longest first; None while none is known.
_known_pattern: re.Pattern[str] | None = None


def forms(secret: str) -> set[str]:
    """The ways ``secret`` may be written in text: as it is, percent-decoded,
    percent-encoded (``%20`` and ``+`` for a space, ``/`` encoded or not), and inside the
    quotes of a Python ``repr`` (of the text and of its UTF-8 bytes) and of JSON."""
    decoded = unquote(secret)
    written = {secret, decoded}
    for text in (secret, decoded):
        written |= {quote(text, safe=""), quote(text), quote_plus(text, safe="")}
        written.add(repr(text)[1:-1])
        written.add(repr(text.encode("utf-8", "surrogateescape"))[2:-1])
        written.add(json.dumps(text)[1:-1])
        written.add(json.dumps(text, ensure_ascii=False)[1:-1])
    return {form for form in written if len(form) >= SHORTEST}


def remember(*secrets: str | None) -> None:
    """Mask ``secrets`` (and each of their ``forms``) in everything ``redact`` sees from now
    on. Called when a secret-bearing setting is read; a plugin holding a secret from
    elsewhere (a file) may call it too."""
    global _known_pattern
    new = {form for secret in secrets if secret for form in forms(secret)} - _known
    if not new:
        return
    with _lock:
        _known.update(new)
        ordered = sorted(_known, key=len, reverse=True)
        _known_pattern = re.compile("|".join(map(re.escape, ordered)))


def redact(text: str) -> str:
    """``text`` with every known secret, URL password, ``key=value`` secret and Discord token
    masked."""
    pattern = _known_pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    text = mask_userinfo(text)
    text = _KEY_VALUE.sub(_masked_pair, text)
    return _DISCORD_TOKEN.sub(REDACTED, text)


def _masked_pair(match: re.Match[str]) -> str:
    quote_mark = match["quote"] or ""
    return f"{match['keep']}{quote_mark}{REDACTED}{quote_mark}"
