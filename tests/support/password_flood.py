"""Password guessing as an attacker does it, against a real ``dback serve``, and a viewer
from another address logging in meanwhile.

``python tests/password_flood.py URL GUILD SECONDS RATE ADDRESS:COUNT...`` opens COUNT
WebSocket connections from each local ADDRESS (127.0.0.2, 127.0.0.3...: Linux routes all of
127.0.0.0/8 to loopback, so each is a client address of its own), and on every connection
sends a ``connect`` with a new wrong password RATE times a second - just under the message
rate limit, so the server has no reason to close it - for SECONDS. It prints one JSON object:
per address, how many answers said the password was wrong (a check was made), how many were
refused by the throttle without a check, and any other answer. Run as its own process, so
the attacker's work neither slows the server nor the viewer whose logins are measured.

``served`` runs ``dback serve`` with its log in a file (a pipe nobody reads would fill and
stall the server) and ``log_in_timed`` measures a viewer's logins.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dback_core.testing import Client
from dback_core.wire import protocol

log = logging.getLogger(__name__)

#: ``DBACK_PASSWORD_LOCKOUT_AFTER`` for the brute-force tests: each guessing address reaches
#: its lockout within the flood (the defaults are covered by ``test_guessing.py``).
LOCKOUT_AFTER = 5
#: Where the viewer logs in from, how long the guessers guess, and how often: under the
#: message rate limit (5/s), so the server has no reason to close a guessing connection.
VIEWER = "127.0.0.9"
SECONDS = 12.0
RATE = 4.5
#: A guild-switch rate above ``RATE``: by default (1/s) the switch limit would answer most
#: guesses before any password is looked at; these floods measure the password throttle.
UNLIMITED_SWITCHES = {"DBACK_SWITCH_RATE": "10", "DBACK_SWITCH_BURST": "20"}

#: How the throttle's refusals start (``dback_core.serving.guessing``; the PostgreSQL
#: plugin's busy).
THROTTLED = ("Too many wrong passwords", "A password check from your address", "Too many password")


def classify(message: str) -> str:
    if message == protocol.LOGIN_REFUSED:
        return "checked"
    if message.startswith(THROTTLED):
        return "throttled"
    return "other"


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame with an all-zero mask: valid, and no per-byte work to mask it."""
    length = len(payload)
    size = (
        bytes([0x80 | length]) if length < 126 else bytes([0x80 | 126]) + length.to_bytes(2, "big")
    )
    return bytes([0x80 | opcode]) + size + b"\0\0\0\0" + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next server frame's opcode and payload (servers never mask)."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(length)


async def open_raw(url: str, address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket without compression from ``address``, its server-list read. Raw, so
    hundreds of guessing connections cost this process little of the machine."""
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port), local_addr=(address, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
    await read_frame(reader)  # server-list
    return reader, writer


async def guess_on(url: str, address: str, guild: str, until: float, rate: float) -> Counter[str]:
    """One attacker connection: wrong passwords at ``rate`` a second until ``until``."""
    answers: Counter[str] = Counter()
    try:
        reader, writer = await open_raw(url, address)
    except (OSError, ConnectionError, asyncio.IncompleteReadError) as error:
        answers[f"not connected: {type(error).__name__}"] += 1
        return answers
    try:
        number = 0
        while (now := time.monotonic()) < until:
            number += 1
            guess = {"type": "connect", "data": {"server": guild, "password": f"guess-{number}"}}
            writer.write(client_frame(0x1, json.dumps(guess).encode()))
            while True:
                opcode, payload = await read_frame(reader)
                if opcode == 0x9:  # ping
                    writer.write(client_frame(0xA, payload))
                elif opcode == 0x8:
                    raise ConnectionError("closed by the server")
                elif opcode == 0x1 and (frame := json.loads(payload))["type"] == "error":
                    break
            answers[classify(frame["data"]["message"])] += 1
            await asyncio.sleep(max(0.0, now + 1 / rate - time.monotonic()))
    except (OSError, ConnectionError, asyncio.IncompleteReadError) as error:
        answers[f"dropped: {type(error).__name__}"] += 1
    finally:
        writer.close()
    return answers


async def flood(
    url: str, guild: str, seconds: float, rate: float, counts: dict[str, int]
) -> dict[str, dict[str, int]]:
    until = time.monotonic() + seconds
    tasks = {
        address: [
            asyncio.create_task(guess_on(url, address, guild, until, rate)) for _ in range(count)
        ]
        for address, count in counts.items()
    }
    result = {}
    for address, started in tasks.items():
        total: Counter[str] = Counter()
        for answers in await asyncio.gather(*started):
            total.update(answers)
        result[address] = dict(total)
    return result


@dataclass
class Flood:
    """A running flood process; ``result()`` waits for its counts."""

    process: asyncio.subprocess.Process

    async def result(self) -> dict[str, dict[str, int]]:
        out, err = await asyncio.wait_for(self.process.communicate(), 120)
        assert self.process.returncode == 0, err.decode()
        counts: dict[str, dict[str, int]] = json.loads(out)
        return counts


async def start_flood(
    url: str, guild: str, seconds: float, rate: float, counts: dict[str, int]
) -> Flood:
    """The flood in a process of its own, started now."""
    spec = [f"{address}:{count}" for address, count in counts.items()]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        url,
        guild,
        str(seconds),
        str(rate),
        *spec,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return Flood(process)


@dataclass
class Served:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


@contextlib.asynccontextmanager
async def served(env: Mapping[str, str], log: Path) -> AsyncIterator[Served]:
    """``dback serve`` on a free port with ``env`` (plus PATH), logging JSON into ``log``;
    stopped with SIGTERM on leaving."""
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DBACK_LOG_FORMAT": "json",
        **UNLIMITED_SWITCHES,
        **env,
    }
    with log.open("w") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dback_core", "serve", "--port", "0", env=environ, stderr=sink
        )
    try:
        port = await _serving_port(process, log)
        yield Served(port, log)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)


async def _serving_port(process: asyncio.subprocess.Process, log: Path, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.returncode is None, "dback serve exited:\n" + log.read_text()
        for line in log.read_text().splitlines():
            message = json.loads(line)["message"] if line.startswith("{") else ""
            if message.startswith("serving "):
                return int(message.rsplit(":", 1)[1])
        await asyncio.sleep(0.1)
    raise AssertionError("dback serve did not start:\n" + log.read_text())


async def log_in_timed(url: str, address: str, guild: str, password: str) -> tuple[str, float]:
    """A new viewer from ``address`` joins ``guild`` with ``password``: the answer's type and
    the seconds from sending ``connect`` to the answer."""
    async with Client(url, timeout=30, local_addr=(address, 0)) as viewer:
        started = time.perf_counter()
        answer = await viewer.join(guild, password=password)
        return answer["type"], time.perf_counter() - started


async def guess_while_a_viewer_logs_in(
    url: str, guild: str, password: str, counts: dict[str, int]
) -> tuple[dict[str, dict[str, int]], list[tuple[str, float]]]:
    """The flood from ``counts`` (address -> connections) and, during it, 10 logins of a
    viewer from ``VIEWER`` a second apart: the flood's counts and each login's outcome."""
    attack = await start_flood(url, guild, SECONDS, RATE, counts)
    await asyncio.sleep(1.5)  # every guessing connection open and sending
    logins = []
    for _ in range(10):
        logins.append(await log_in_timed(url, VIEWER, guild, password))
        await asyncio.sleep(0.8)
    return await attack.result(), logins


def check(
    counts: dict[str, dict[str, int]], logins: list[tuple[str, float]], records: list[dict]
) -> None:
    for address, answers in counts.items():
        log.info("guesser %s: %s", address, answers)
        assert answers.get("checked", 0) <= LOCKOUT_AFTER, (address, answers)
        assert answers.get("throttled", 0) > 100, (address, answers)  # it really flooded
        assert set(answers) <= {"checked", "throttled"}, (address, answers)
    log.info("viewer logins in order: %s", [round(seconds, 3) for _, seconds in logins])
    latencies = sorted(seconds for _, seconds in logins)
    log.info("viewer logins: median %.3f s, worst %.3f s", latencies[5], latencies[-1])
    assert [kind for kind, _ in logins] == ["server-join"] * 10
    assert latencies[-1] < 0.5, latencies
    lockouts = [r["message"] for r in records if "locked out" in r["message"]]
    assert sorted(lockouts) == sorted(
        f"password checks from {address} locked out for 600 s after {LOCKOUT_AFTER} wrong passwords"
        for address in counts
    ), lockouts
    warnings = [r["message"] for r in records if r["level"] == "WARNING"]
    assert len(warnings) <= len(counts) + 2, warnings


def main() -> None:
    url, guild, seconds, rate, *specs = sys.argv[1:]
    counts = {spec.rsplit(":", 1)[0]: int(spec.rsplit(":", 1)[1]) for spec in specs}
    print(json.dumps(asyncio.run(flood(url, guild, float(seconds), float(rate), counts))))


if __name__ == "__main__":
    main()
