"""One server under test, driven only through d-back's API so both servers see the same calls.

Run by ``run.py`` with either interpreter: dback's (``d_back.server`` is dback's compatibility
package) or the virtual environment holding d-back 0.0.18. It serves two guilds - a small one
for broadcasts and a large one for joins - and obeys one-line commands on stdin:

``broadcast COUNT RATE``
    ``broadcast_presence`` COUNT times at RATE per second into the small guild. Each event
    carries the wall-clock time it was *scheduled* for in its username, so clients measure
    latency from the schedule, not from when a busy server got round to sending it.
``quit``
    Exit.

Two settings of this script alone make the ``dback-uvloop`` and ``dback-orjson`` variants, to
measure optional packages without changing the server: ``BENCH_LOOP=uvloop`` runs it on
uvloop's event loop, and ``BENCH_JSON=orjson`` makes ``dback_core.wire.protocol.dumps`` - every
frame and every guild's encoded users map - use orjson.

Answers go to the original stdout; everything the server itself prints (d-back prints every
frame) goes to /dev/null, as it would to a log file nobody reads.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

SMALL = "100000000000000001"
LARGE = "100000000000000002"
SMALL_ID = "bench"
LARGE_ID = "big"


def servers() -> dict[str, dict]:
    return {
        SMALL: {"id": SMALL_ID, "name": "Bench", "default": True, "passworded": False},
        LARGE: {"id": LARGE_ID, "name": "Big bench", "passworded": False},
    }


def members(count: int, base: int) -> dict[str, dict]:
    users = {}
    for index in range(count):
        uid = str(base + index)
        users[uid] = {
            "uid": uid,
            "username": f"member-{index:05d}",
            "status": ("online", "idle", "dnd")[index % 3],
            "roleColor": "#ff6b6b" if index % 2 else "#5865f2",
        }
    return users


def use_orjson() -> None:
    """Encode dback's frames with orjson: ``protocol.dumps`` is what every encoder calls."""
    import orjson

    from dback_core.wire import protocol

    protocol.dumps = lambda value: orjson.dumps(value).decode()


def member_uid(index: int) -> str:
    return str(200000000000000000 + index)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=10000)
    args = parser.parse_args()

    control = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    if os.environ.get("BENCH_JSON") == "orjson":
        use_orjson()
    from d_back.server import WebSocketServer

    users = {
        SMALL: members(args.small, 200000000000000000),
        LARGE: members(args.large, 300000000000000000),
    }

    async def get_server_data():
        return servers()

    async def get_user_data(server_id):
        return users.get(server_id, {})

    server = WebSocketServer(port=args.port, host="127.0.0.1")
    server.on_get_server_data(get_server_data)
    server.on_get_user_data(get_user_data)
    serving = asyncio.create_task(server.start())
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", args.port)
        except OSError:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.05)
            continue
        writer.close()
        break
    await ready(server)
    control.write("ready\n")

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        if line[0] == "broadcast":
            count, rate = int(line[1]), float(line[2])
            start_wall, start = time.time() + 0.05, time.monotonic() + 0.05
            for index in range(count):
                offset = index / rate
                delay = start + offset - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await server.broadcast_presence(
                    SMALL,
                    member_uid(index % args.small),
                    "online",
                    username=f"u{index}|{start_wall + offset:.6f}",
                    role_color="#ff6b6b",
                )
            control.write(f"done {time.monotonic() - start:.3f}\n")
        elif line[0] == "quit":
            break
    os._exit(0)


async def ready(server) -> None:
    """Until dback says it is ready (with several workers on one port, the connection above
    may have reached another worker; an edge is ready once it serves the snapshot). d-back
    has no such notion: listening is ready."""
    dback = getattr(server, "server", None)
    while dback is not None and dback.readiness():
        await asyncio.sleep(0.05)


def loop_factory():
    """The event loop to run on: asyncio's own, or uvloop's with ``BENCH_LOOP=uvloop``."""
    if os.environ.get("BENCH_LOOP") == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(main())
