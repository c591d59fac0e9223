"""``dback serve --workers N``: real worker processes share one port (SO_REUSEPORT) and one
world through the real Redis; a dead worker is started again; SIGTERM stops them all with
1001 to every client; without Redis it refuses to start, clearly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys

import pytest
import websockets

from dback_core.testing import Client

WAIT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def http_json(port: int, path: str) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return json.loads(raw.partition(b"\r\n\r\n")[2])


async def roles_seen(port: int, asks: int = 40) -> set[str]:
    """The Redis roles that answer on ``port`` - one per worker the kernel picked."""
    seen = set()
    for _ in range(asks):
        described = await http_json(port, "/api/plugins")
        detail = next(e for e in described["plugins"] if e["name"] == "dback-redis")["detail"]
        seen.add(re.search(r"role=auto \((\w+)\)", detail).group(1))
    return seen


async def close_code(client: Client) -> int | None:
    """Read until the connection closes; the close code the server sent (None: none)."""
    try:
        while True:
            await client.connection.recv()
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def worker_pids(log: str) -> dict[int, int]:
    """Worker number -> pid of its latest start, from the supervisor's log."""
    return {int(n): int(pid) for n, pid in re.findall(r"worker (\d+) started \(pid (\d+)\)", log)}


async def wait_for_log(path, pattern: str, wait: float = WAIT) -> re.Match:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        found = re.search(pattern, path.read_text())
        if found:
            return found
        assert loop.time() < deadline, f"{pattern!r} not logged:\n{path.read_text()}"
        await asyncio.sleep(0.05)


@pytest.mark.redis
async def test_workers_share_the_port_and_the_world_and_are_supervised(namespace, tmp_path):
    url = await namespace.new_user("workers")
    port = free_port()
    log_path = tmp_path / "workers.log"
    env = {
        **{k: v for k, v in os.environ.items() if k != "DBACK_PLUGINS"},
        "DBACK_PLUGINS": "dback-redis,dback-mock",
        "DBACK_REDIS_URL": url,
        "DBACK_REDIS_PREFIX": namespace.prefix,
        "DBACK_MOCK_SEED": "4",
        "DBACK_MOCK_INTERVAL": "0.1",
    }
    with log_path.open("wb") as log:
        parent = subprocess.Popen(
            [sys.executable, "-m", "dback_core", "serve", "--workers", "2", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # Both workers listen on the one port: the kernel hands connections to each.
        await wait_for_log(log_path, r"(?s)serving .*serving ")
        assert await roles_seen(port) == {"publisher", "edge"}
        clients = [Client(f"ws://127.0.0.1:{port}", timeout=WAIT) for _ in range(6)]
        for client in clients:
            await client.__aenter__()
            joined = await client.join("default")
            assert joined["data"]["serverName"] == "D-World"
            await client.recv_type("presence", "message", timeout=WAIT)  # live everywhere

        pids = worker_pids(log_path.read_text())
        assert sorted(pids) == [1, 2]
        os.kill(pids[1], signal.SIGKILL)
        await wait_for_log(log_path, r"worker 1 \(pid \d+\) exited")
        restarted = await wait_for_log(log_path, rf"worker 1 started \(pid (?!{pids[1]}\b)\d+\)")
        await wait_for_log(log_path, rf"(?s){re.escape(restarted.group(0))}.*serving ")
        # Clients connected now are on live workers, whichever the kernel picks: every one of
        # them must get 1001 when the supervisor stops.
        fresh = [Client(f"ws://127.0.0.1:{port}", timeout=WAIT) for _ in range(6)]
        for client in fresh:
            await client.__aenter__()
            assert (await client.join("default"))["type"] == "server-join"
            await client.recv_type("presence", "message", timeout=WAIT)

        parent.send_signal(signal.SIGTERM)
        codes = [await close_code(client) for client in clients]
        fresh_codes = [await close_code(client) for client in fresh]
        assert parent.wait(WAIT) == 0
        assert fresh_codes == [1001] * len(fresh), fresh_codes
        # The first clients on the killed worker were cut off by the kill; the others got 1001.
        assert set(codes) <= {1001, 1006, None}, codes
        assert "all workers stopped" in log_path.read_text()
        for pid in worker_pids(log_path.read_text()).values():
            assert not os.path.exists(f"/proc/{pid}"), "a worker outlived its supervisor"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


@pytest.mark.redis
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
async def test_one_signal_to_the_process_group_stops_the_workers_gracefully(
    namespace, tmp_path, signum
):
    """``systemctl stop`` with the default KillMode, or a Ctrl-C in the terminal, signals the
    parent and every worker at once; the supervisor then forwards SIGTERM. That is one stop,
    not a second signal: every worker closes its clients with 1001 and the parent exits 0."""
    url = await namespace.new_user("group")
    port = free_port()
    log_path = tmp_path / "workers.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DBACK_")},
        "DBACK_PLUGINS": "dback-redis,dback-mock",
        "DBACK_REDIS_URL": url,
        "DBACK_REDIS_PREFIX": namespace.prefix,
    }
    with log_path.open("wb") as log:
        parent = subprocess.Popen(
            [sys.executable, "-m", "dback_core", "serve", "--workers", "2", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as under a terminal or systemd
        )
    try:
        await wait_for_log(log_path, r"(?s)serving .*serving ")
        client = Client(f"ws://127.0.0.1:{port}", timeout=WAIT)
        await client.__aenter__()
        assert (await client.join("default"))["type"] == "server-join"

        os.killpg(parent.pid, signum)
        assert await close_code(client) == 1001
        assert parent.wait(WAIT) == 0
        text = log_path.read_text()
        assert "second signal" not in text, text
        assert "all workers stopped" in text
        assert "exited with" not in text, text  # no worker was restarted or killed
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait()


def test_workers_without_redis_refuse_to_start_clearly(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBACK_REDIS")}
    result = subprocess.run(
        [sys.executable, "-m", "dback_core", "serve", "--workers", "2", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--workers: no active plugin shares the world between workers" in result.stderr


def test_workers_with_a_pinned_redis_role_refuse_naming_the_role(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBACK_")}
    # Refused before any worker starts: nothing connects to this address.
    env |= {"DBACK_REDIS_URL": "redis://127.0.0.1:1/0", "DBACK_REDIS_ROLE": "edge"}
    env["DBACK_PLUGINS"] = "dback-redis"
    result = subprocess.run(
        [sys.executable, "-m", "dback_core", "serve", "--workers", "2", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert (
        "--workers: plugin dback-redis shares the world between workers but needs "
        "DBACK_REDIS_ROLE=auto (the default), not 'edge'"
    ) in result.stderr


def workers_env(namespace, url: str, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("DBACK_")},
        "DBACK_PLUGINS": "dback-redis,dback-mock",
        "DBACK_REDIS_URL": url,
        "DBACK_REDIS_PREFIX": namespace.prefix,
        **extra,
    }


def start_workers(count: int, port: int, env: dict[str, str], log_path) -> subprocess.Popen:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dback_core",
                "serve",
                "--workers",
                str(count),
                "--port",
                f"{port}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def end_workers(parent: subprocess.Popen, log_path) -> None:
    """Kill the supervisor and every worker it started (some may be stopped)."""
    if parent.poll() is None:
        parent.kill()
        parent.wait()
    for pid in re.findall(r"worker \d+ started \(pid (\d+)\)", log_path.read_text()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


async def joins(port: int, timeout: float) -> bool:
    """Whether a new viewer gets the guild within ``timeout`` seconds."""
    try:
        async with Client(f"ws://127.0.0.1:{port}", timeout=timeout) as client:
            return (await client.join("default"))["type"] == "server-join"
    except (OSError, TimeoutError, websockets.WebSocketException):
        return False


@pytest.mark.redis
async def test_a_stopped_worker_is_replaced_and_new_connections_all_succeed_again(
    namespace, tmp_path
):
    """A SIGSTOPped worker keeps its listening socket, so the kernel keeps handing it new
    connections that time out. Its heartbeat stops: the parent kills it and starts another."""
    url = await namespace.new_user("stopped")
    port = free_port()
    log_path = tmp_path / "workers.log"
    env = workers_env(namespace, url, DBACK_WORKER_TIMEOUT="2")
    parent = start_workers(3, port, env, log_path)
    try:
        await wait_for_log(log_path, r"(?s)serving .*serving .*serving ")
        pids = worker_pids(log_path.read_text())
        os.kill(pids[2], signal.SIGSTOP)
        await wait_for_log(
            log_path,
            rf"worker 2 \(pid {pids[2]}\) sent no heartbeat for \d+\.\d s \(stopped or stuck\): "
            r"killed it with SIGKILL",
        )
        restarted = await wait_for_log(log_path, rf"worker 2 started \(pid (?!{pids[2]}\b)\d+\)")
        await wait_for_log(log_path, rf"(?s){re.escape(restarted.group(0))}.*serving ")
        assert not os.path.exists(f"/proc/{pids[2]}")
        # Every new connection now reaches a worker that answers: none is left to time out
        # in the stopped worker's queue (about a third of them were, before the kill).
        results = []
        for _ in range(4):
            results += await asyncio.gather(*(joins(port, WAIT) for _ in range(30)))
        assert results.count(False) == 0, f"{results.count(False)} of {len(results)} failed"
    finally:
        end_workers(parent, log_path)


@pytest.mark.redis
async def test_a_worker_that_fails_at_start_is_restarted_ever_more_slowly(namespace, tmp_path):
    """The port is held by a socket without SO_REUSEPORT, so every worker fails to listen -
    after its plugins started, which may take 10 s to stop again: the delays grow anyway."""
    url = await namespace.new_user("failing")
    log_path = tmp_path / "workers.log"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        parent = start_workers(2, port, workers_env(namespace, url), log_path)
        try:
            pattern = r"worker (\d) \(pid \d+\) exited with 1 .*; starting it again in (\d+) s"
            for number in (1, 2):
                each = pattern.replace(r"(\d)", str(number), 1)
                await wait_for_log(log_path, rf"(?s)({each}.*){{3}}", wait=4 * WAIT)
            # Whichever attempts took 10 s to stop again (an elected publisher may), no
            # worker ever served: each one's delays double from 1 s, never reset.
            for number in (1, 2):
                delays = [
                    int(d) for n, d in re.findall(pattern, log_path.read_text()) if n == str(number)
                ]
                assert delays == [2**i for i in range(len(delays))], (number, delays)
            assert not re.search(r"serving \d+ guilds", log_path.read_text())
        finally:
            end_workers(parent, log_path)


@pytest.mark.redis
async def test_workers_that_lost_the_election_wait_for_the_first_snapshot_before_listening(
    namespace, tmp_path
):
    """Workers start together; the one elected loads its providers before it writes the
    snapshot. The others must not listen meanwhile with an empty world. Here the test holds
    the lease (a publisher still loading) and writes the snapshot a second after the workers'
    event loops started."""
    url = await namespace.new_user("snapshot")
    await namespace.admin.set(f"{namespace.prefix}:lease", "a-slow-publisher", px=120_000)
    port = free_port()
    log_path = tmp_path / "workers.log"
    env = workers_env(namespace, url, DBACK_PLUGINS="dback-redis", DBACK_PROVIDER_TIMEOUT="60")
    parent = start_workers(2, port, env, log_path)
    try:
        await wait_for_log(log_path, r"(?s)event loop: .*event loop: ")
        await asyncio.sleep(1.0)
        guild = {"id": "late", "name": "Written late", "passworded": False, "is_default": True}
        await namespace.admin.set(f"{namespace.prefix}:servers", json.dumps({"late": guild}))
        await wait_for_log(log_path, r"(?s)serving \d+ guilds.*serving \d+ guilds")
        assert re.findall(r"serving (\d+) guilds", log_path.read_text()) == ["1", "1"]
        async with Client(f"ws://127.0.0.1:{port}", timeout=WAIT) as client:
            assert (await client.join("late"))["data"]["serverName"] == "Written late"
    finally:
        end_workers(parent, log_path)
