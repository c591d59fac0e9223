"""What formatting one log line costs: ``python benchmarks/log_format.py``.

Every line ``dback serve`` writes passes its formatter, which masks secrets and (in text
logs) escapes control characters; this measures that cost per line for typical lines of
both formats, with a few secrets known to the process as a configured server has them.
Prints microseconds per line, the median of several rounds.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time

from dback_core.ops.logs import configure_logging
from dback_core.plugin.settings import Setting

#: Settings as a server with PostgreSQL, Redis and Discord configured reads them.
ENVIRON = {
    "DBACK_BENCH_DSN": "postgresql://dback:s3cr3t p@ss:w/rd@db.example:5432/dback",
    "DBACK_BENCH_REDIS": "rediss://:another-s3cret@cache.example:6380/0",
    "DBACK_BENCH_TOKEN": "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs",
}

LINES = [
    ("client %s connected", ("203.0.113.7",)),
    ("serving %d guilds on ws://%s:%d", (4, "127.0.0.1", 3000)),
    ("plugin %s: guild %s: name %s", ("dback-postgres", "482910331", "cut to 100 characters")),
    ("PostgreSQL at %s is ready (schema version %d)", ("postgresql://dback@db:5432/dback", 3)),
    (
        "static file %s to %s: no progress for %.0f s, dropped after %d of %d bytes",
        ("/assets/app.js", "198.51.100.20", 30.0, 65536, 1048576),
    ),
]


def _settings() -> None:
    """Read the secret-bearing settings, as plugins do when they load (where the formatter
    learns which values to mask, if it does)."""
    declarations = [
        Setting("DBACK_BENCH_DSN", str, None, "", secret=True),
        Setting("DBACK_BENCH_REDIS", str, None, "", secret=True),
        Setting("DBACK_BENCH_TOKEN", str, None, "", secret=True),
    ]
    for setting in declarations:
        setting.parse(ENVIRON)


def _records() -> list[logging.LogRecord]:
    return [
        logging.LogRecord("dback_core", logging.INFO, __file__, 1, message, args, None)
        for message, args in LINES
    ]


def measure(log_format: str, rounds: int, count: int) -> float:
    """Microseconds per formatted line, the median of ``rounds`` rounds of ``count`` lines."""
    configure_logging("INFO", log_format)
    formatter = logging.getLogger().handlers[0].formatter
    assert formatter is not None
    records = _records()
    results = []
    for _ in range(rounds):
        started = time.perf_counter()
        for index in range(count):
            formatter.format(records[index % len(records)])
        results.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--lines", type=int, default=20_000)
    arguments = parser.parse_args()
    _settings()
    for log_format in ("text", "json"):
        cost = measure(log_format, arguments.rounds, arguments.lines)
        sys.stdout.write(f"{log_format}: {cost:.2f} us per line\n")


if __name__ == "__main__":
    main()
