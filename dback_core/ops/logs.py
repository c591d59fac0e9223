"""Logging setup for the ``dback`` command: quiet, one line per notable event.

Two formats: human text (the default) and JSON lines (``DBACK_LOG_FORMAT=json``) for log
shippers. Both pass every line through ``redact``, a last line of defence: the server never
logs credentials on purpose, but a plugin's exception may carry a DSN with a password or a
bot token, and those must not reach a log file.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from dback_core.plugin.redaction import redact

FORMATS = ("text", "json")

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactingFormatter(logging.Formatter):
    """The usual text format, redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


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
        return json.dumps(entry, ensure_ascii=False)


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
