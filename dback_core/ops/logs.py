"""Logging setup for the ``dback`` command: quiet, one line per notable event.

Two formats: human text (the default) and JSON lines (``DBACK_LOG_FORMAT=json``) for log
shippers. Both formatters are the last line of defence for what a log may not hold:

- **Secrets.** Every line passes ``redact``: the secrets the process was configured with
  are masked exactly, in every form they may be written in, and URL passwords, ``password=``
  pairs and Discord tokens by pattern (``dback_core.plugin.redaction``).
- **Forged lines.** Text that reaches a log from a client (a request path) or a plugin (a
  guild's id or name) may hold line breaks, terminal escape sequences or bidirectional
  overrides, which would let it fake a log line or hide part of one on a terminal. The text
  formatter escapes them once, here, for the whole line: C0 and C1 control characters, DEL,
  U+2028/U+2029 and the bidi controls become ``\\n``, ``\\x1b``, ``\\u202e``... A traceback
  keeps its own line breaks, but those inside an exception's message are escaped like a
  message's. JSON lines encode the same characters as ``\\uXXXX``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from types import TracebackType

from dback_core.plugin.redaction import redact

FORMATS = ("text", "json")

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Bidirectional controls: marks, embeddings, overrides and isolates.
_BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
#: Every character a text log escapes, with its escape.
_ESCAPES: dict[int, str] = {
    code: (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    for code in [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *_BIDI]
}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
#: The same, keeping line breaks: for a traceback's own lines.
_ESCAPES_KEEPING_LINES = {**_ESCAPES, ord("\n"): "\n"}
#: What JSON's encoder leaves as it is but a log line must not hold raw.
_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in _ESCAPES if code >= 0x7F}

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


def escape(text: str) -> str:
    """``text`` on one line, with every control, line or bidi character escaped."""
    return text.translate(_ESCAPES)


def escape_messages(text: str, error: BaseException | None) -> str:
    """A formatted traceback of ``error`` with the line breaks inside the messages of
    ``error`` and of its causes escaped, so only the traceback's own lines remain."""
    for message in _messages(error):
        text = text.replace(message, escape(message))
    return text


def escape_keeping_lines(text: str) -> str:
    """``text`` with every control, line or bidi character escaped but its line breaks."""
    return text.translate(_ESCAPES_KEEPING_LINES)


def _messages(error: BaseException | None) -> list[str]:
    """The messages of ``error``, its causes and contexts that span lines or hold escapes."""
    found: list[str] = []
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        try:
            message = str(error)
        except Exception:
            message = ""  # a broken __str__: the traceback shows that itself
        if message != escape(message):
            found.append(message)
        error = error.__cause__ or error.__context__
    return found


class RedactingFormatter(logging.Formatter):
    """The usual text format, redacted, each record on one line (a traceback on its own
    lines after it)."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = escape(redact(self.formatMessage(record)))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + escape_keeping_lines(redact(self.formatStack(record.stack_info)))
        return text

    def formatException(self, ei: ExcInfo) -> str:
        return escape_keeping_lines(redact(escape_messages(super().formatException(ei), ei[1])))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False).translate(_JSON_ESCAPES)


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Send the process's logs to stderr in ``log_format`` (``text`` or ``json``)."""
    if log_format not in FORMATS:
        raise ValueError(
            f"DBACK_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {log_format!r}"
        )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else RedactingFormatter(_TEXT_FORMAT)
    )
    root.addHandler(handler)
    root.setLevel(level.upper())
    # websockets logs every failed handshake at INFO; those are not the operator's business.
    logging.getLogger("dback_core.websockets").setLevel(max(logging.WARNING, root.level))
