"""What a hostile client can cost the server: ``python benchmarks/abuse.py [switch|readers]``.

Both scenarios run one dback (``dback serve``'s defaults, read from the environment, so
``DBACK_COMPRESSION=none`` or any other setting applies) in a child process pinned to CPU 0,
with every client in this process on CPU 1, over real sockets on 127.0.0.1. The server serves
``--guilds`` big guilds of ``--members`` members (1,650 members make a ~165 KB join) and one
watched guild into which it publishes a presence every ``--interval`` seconds, and reports
its own CPU time, resident memory and the longest its event loop was late (a 5 ms timer).

switch
    ``--flood`` connections from one address each send a ``connect`` to the next big guild
    every 0.2 s (the message rate a client may keep up), reading and discarding what comes
    back, for ``--seconds``; one watcher (the real ``websockets`` client, compression on)
    in the watched guild records the gaps between its frames. Reports the server's CPU
    share, its longest loop stall, the watcher's longest and 99th-percentile gap, joins
    delivered and ``error`` answers.
readers
    ``--readers`` connections from one address join the watched guild and never read again
    (4 KiB receive buffers), with ``--switching`` each still sending a ``connect`` to the next
    big guild every 0.2 s; reports the server's resident memory per reader at its peak,
    and when the last of them was cut (``--seconds`` at most).

Prints one JSON object; the numbers in docs/performance.md come from it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clients import connect_message, handshake

from dback_core import hookimpl
from dback_core.plugin.events import Presence

HERE = Path(__file__).resolve().parent
WATCHED = "watched"


# -- the server (child process) ---------------------------------------------------------------


def guild_members(count: int, base: int) -> dict[str, dict[str, Any]]:
    return {
        str(base + index): {
            "uid": str(base + index),
            "username": f"member-{index:05d}",
            "status": ("online", "idle", "dnd")[index % 3],
            "roleColor": "#ff6b6b" if index % 2 else "#5865f2",
        }
        for index in range(count)
    }


class Flooded:
    """A plugin: ``guilds`` big guilds ``g0``..., the watched guild, and its presences."""

    def __init__(self, guilds: int, members: int, interval: float) -> None:
        self.interval = interval
        self.members = members
        self.servers: dict[str, dict[str, Any]] = {
            str(1000 + index): {"id": f"g{index}", "name": f"Guild {index}"}
            for index in range(guilds)
        }
        self.servers["999"] = {"id": WATCHED, "name": "Watched", "default": True}

    @hookimpl
    def get_server_data(self, server_id: str | None) -> dict[str, dict[str, Any]]:
        return self.servers

    @hookimpl
    def get_user_data(self, server_id: str) -> dict[str, dict[str, Any]]:
        return guild_members(self.members, 300000000000000000 + int(server_id) * 100000)

    @hookimpl
    def event_sources(self) -> list[Any]:
        return [self.presences]

    async def presences(self) -> Any:
        base = 300000000000000000 + 999 * 100000
        statuses = ("online", "idle", "dnd")
        count = 0
        while True:
            await asyncio.sleep(self.interval)
            index, rounds = count % self.members, count // self.members
            yield Presence("999", str(base + index), statuses[(index + 1 + rounds) % 3])
            count += 1


async def loop_lateness(worst: list[float]) -> None:
    """Keep ``worst[0]`` at the longest a 5 ms timer fired late (the loop's longest stall)
    and ``worst[2]`` at the CPU time the process used meanwhile: a stall with little CPU
    time is the machine running something else, not the server's own work."""
    loop = asyncio.get_running_loop()
    while True:
        start, cpu = loop.time(), time.process_time()
        await asyncio.sleep(0.005)
        late = loop.time() - start - 0.005
        if late > worst[0]:
            worst[0], worst[2] = late, time.process_time() - cpu


def watch_collections(worst: list[float]) -> None:
    """Keep ``worst[1]`` at the longest garbage collection: a stall that is not dback's code."""
    started = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            worst[1] = max(worst[1], time.perf_counter() - started[0])

    gc.callbacks.append(timed)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def serve(args: argparse.Namespace) -> None:
    """The child: a dback with the ``Flooded`` plugin, answering ``stats`` on stdin."""
    from dback_core.loading.plugins import load_plugins
    from dback_core.plugin.server_settings import Settings
    from dback_core.serving.server import DbackServer

    plugin = Flooded(args.guilds, args.members, args.interval)
    plugins = load_plugins(environ={"DBACK_PLUGINS": ""}, in_process=[("flooded", plugin)])
    settings = Settings.from_env(host="127.0.0.1", port=args.port)
    server = DbackServer(plugins, settings)
    await server.start()
    worst = [0.0, 0.0, 0.0]
    watch = asyncio.create_task(loop_lateness(worst))
    watch_collections(worst)
    out = os.fdopen(os.dup(1), "w", buffering=1)
    out.write("ready\n")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        stats = {
            "cpu": usage.ru_utime + usage.ru_stime,
            "stall": worst[0],
            "gc": worst[1],
            "stall_cpu": worst[2],
            "rss": rss_bytes(),
            "viewers": len(server.fanout.viewers),
            "slow_disconnects": server.fanout.slow_disconnects,
        }
        out.write(json.dumps(stats) + "\n")
        if line == "reset":
            worst[:] = [0.0, 0.0, 0.0]
    watch.cancel()
    await server.stop()


# -- the clients (this process) ---------------------------------------------------------------


class Server:
    """The child process and its stats pipe."""

    def __init__(self, args: argparse.Namespace) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        command = [sys.executable, __file__, "serve", "--port", str(self.port)]
        for name in ("guilds", "members", "interval"):
            command += [f"--{name}", str(getattr(args, name))]
        self.process = subprocess.Popen(
            ["taskset", "-c", "0", *command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "DBACK_LOG_LEVEL": "ERROR"},
        )
        assert self.process.stdout is not None and self.process.stdin is not None
        self.stdin = self.process.stdin
        self.stdout = self.process.stdout
        if self.stdout.readline().strip() != "ready":
            raise RuntimeError("the server did not start")

    def stats(self, command: str = "stats") -> dict[str, Any]:
        self.stdin.write(command + "\n")
        self.stdin.flush()
        result: dict[str, Any] = json.loads(self.stdout.readline())
        return result

    def stop(self) -> None:
        self.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def open_raw(port: int, receive_buffer: int | None = None) -> socket.socket:
    """A socket past the WebSocket handshake (deflate offered), server list unread."""
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, handshake("127.0.0.1", port))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        data += chunk
    if b" 101 " not in data.split(b"\r\n", 1)[0]:
        raise ConnectionError(data.split(b"\r\n", 1)[0].decode(errors="replace"))
    return sock


class Switcher:
    """Sends a ``connect`` to the next guild every 0.2 s and discards what comes back."""

    def __init__(self, sock: socket.socket, guilds: int, offset: int) -> None:
        self.sock = sock
        self.guilds = guilds
        self.next = offset
        self.received = 0
        self.errors = 0
        self.closed = False

    async def run(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        reading = asyncio.create_task(self.read())
        try:
            while loop.time() < until and not self.closed:
                message = connect_message(f"g{self.next % self.guilds}")
                self.next += 1
                try:
                    await loop.sock_sendall(self.sock, message)
                except OSError:
                    break
                await asyncio.sleep(0.2)
        finally:
            reading.cancel()
            self.sock.close()

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                chunk = await loop.sock_recv(self.sock, 1 << 18)
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                return
            self.received += len(chunk)
            # Errors are small uncompressed text frames: count their type field.
            self.errors += chunk.count(b'"type":"error"')


class Watcher:
    """The real websockets client in the watched guild: the gaps between its frames."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.connection: Any = None

    async def open(self, port: int) -> None:
        from websockets.asyncio.client import connect

        self.connection = await connect(
            f"ws://127.0.0.1:{port}/", compression="deflate", max_size=None
        )
        await self.connection.recv()
        await self.connection.send(json.dumps({"type": "connect", "data": {"server": WATCHED}}))
        await self.connection.recv()

    async def run(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while (now := loop.time()) < until:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.connection.recv(), until - now)
            now = loop.time()
            self.gaps.append(now - last)
            last = now
        await self.connection.close()


async def load_every_guild(port: int, guilds: int) -> None:
    """Each guild loaded once, as on a server that has run a while: loading is a cost per
    guild and refresh, not per connect or per viewer."""
    loop = asyncio.get_running_loop()
    warm = []
    for index in range(guilds):
        warm.append(await open_raw(port))
        await loop.sock_sendall(warm[-1], connect_message(f"g{index}"))
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    for sock in warm:
        sock.close()


async def switch_flood(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    watcher = Watcher()
    await watcher.open(server.port)
    server.stats("reset")
    if not args.cold:
        await load_every_guild(server.port, args.guilds)
    await asyncio.sleep(1.0)  # the warm-up sockets are gone, the guild's presences settle
    socks = [await open_raw(server.port) for _ in range(args.flood)]
    before = server.stats("reset")
    start = loop.time()
    until = start + args.seconds
    switchers = [Switcher(sock, args.guilds, index) for index, sock in enumerate(socks)]
    await asyncio.gather(watcher.run(until), *(s.run(until) for s in switchers))
    after = server.stats()
    elapsed = loop.time() - start
    gaps = watcher.gaps
    return {
        "scenario": "switch",
        "compression": os.environ.get("DBACK_COMPRESSION", "deflate"),
        "connections": args.flood,
        "guilds": args.guilds,
        "seconds": round(elapsed, 1),
        "guilds_loaded_first": not args.cold,
        "warm_up_stall_ms": round(before["stall"] * 1000, 1),
        "server_cpu_share": round((after["cpu"] - before["cpu"]) / elapsed, 3),
        "loop_stall_max_ms": round(after["stall"] * 1000, 1),
        "loop_stall_cpu_ms": round(after["stall_cpu"] * 1000, 1),
        "gc_max_ms": round(after["gc"] * 1000, 1),
        "watcher_gap_max_ms": round(max(gaps) * 1000, 1),
        "watcher_gap_p99_ms": round(statistics.quantiles(gaps, n=100)[98] * 1000, 1),
        "watcher_frames": len(gaps),
        "connects_sent": sum(s.next for s in switchers) - sum(range(args.flood)),
        "error_answers": sum(s.errors for s in switchers),
        "bytes_to_switchers": sum(s.received for s in switchers),
        "switchers_closed": sum(s.closed for s in switchers),
    }


async def non_readers(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    if args.switching:
        await load_every_guild(server.port, args.guilds)
    await asyncio.sleep(1.0)
    baseline = server.stats()
    start = loop.time()
    socks = []
    for _ in range(args.readers):
        sock = await open_raw(server.port, receive_buffer=4096)
        await loop.sock_sendall(sock, connect_message(WATCHED))
        socks.append(sock)
    peak = baseline["rss"]
    cut_after = None
    viewers = args.readers
    switches = 0
    while loop.time() - start < args.seconds:
        for _ in range(5 if args.switching else 1):
            await asyncio.sleep(0.2)
            if args.switching:
                switches += 1
                for sock in socks:
                    with contextlib.suppress(OSError):
                        sock.send(connect_message(f"g{switches % args.guilds}"))
        stats = server.stats()
        peak = max(peak, stats["rss"])
        viewers = stats["viewers"]
        if viewers == 0:
            cut_after = loop.time() - start
            break
    for sock in socks:
        sock.close()
    return {
        "scenario": "readers",
        "compression": os.environ.get("DBACK_COMPRESSION", "deflate"),
        "readers": args.readers,
        "switching": args.switching,
        "presence_interval_s": args.interval,
        "rss_growth_per_reader_kib": round((peak - baseline["rss"]) / args.readers / 1024, 1),
        "all_cut_after_s": None if cut_after is None else round(cut_after, 1),
        "still_connected": viewers,
        "slow_disconnects": server.stats()["slow_disconnects"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=("switch", "readers", "serve"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--guilds", type=int, default=40)
    parser.add_argument("--members", type=int, default=1650)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--flood", type=int, default=250)
    parser.add_argument("--readers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--cold", action="store_true", help="switch: no guild loaded before the flood"
    )
    parser.add_argument(
        "--switching", action="store_true", help="readers: each sends a connect every 0.2 s"
    )
    args = parser.parse_args()
    if args.scenario == "serve":
        asyncio.run(serve(args))
        return
    os.sched_setaffinity(0, {1})
    server = Server(args)
    try:
        scenario = switch_flood if args.scenario == "switch" else non_readers
        print(json.dumps(asyncio.run(scenario(args, server)), indent=1))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
