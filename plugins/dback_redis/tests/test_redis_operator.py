"""What an operator sees from the real ``dback serve`` when Redis is not there, or when its URL
is wrong: an ``unavailable`` plugin that ``/readyz`` names, one line instead of one per retry,
no traceback, a start that does not wait for Redis - and a URL that cannot work refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime

from dback_redis.edge import SUBSCRIBE_WAIT
from tests.support.tcp_forwarder import TcpForwarder


def logged_at(line: str) -> datetime:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


async def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.1)


async def test_an_unreachable_redis_is_unavailable_named_by_readyz_and_heals(
    namespace, start_dback
):
    late = TcpForwarder("127.0.0.1", 6379)  # a Redis that comes up late
    url = (await namespace.new_user("auto")).replace(":6379/", f":{late.port}/")
    try:
        process = await start_dback(url, role="auto")
        lines = process.log_path.read_text().splitlines()
        serving = next(line for line in lines if "serving 0 guilds on ws://" in line)
        # The start waited for the first refusal, not for Redis.
        assert (logged_at(serving) - logged_at(lines[0])).total_seconds() < SUBSCRIBE_WAIT

        ready = await process.api("/readyz")
        where = f"redis://{namespace.prefix}-auto:***@127.0.0.1:{late.port}/0"
        assert ready["ready"] is False
        assert ready["waiting"]["dback-redis"].startswith(
            f"unavailable: cannot reach Redis at {where}: "
        )
        described = await process.api("/api/plugins")
        plugin = next(e for e in described["plugins"] if e["name"] == "dback-redis")
        assert plugin["status"] == "unavailable"
        assert plugin["error"].startswith(f"cannot reach Redis at {where}: Error 111")

        await asyncio.sleep(2)  # attempts after 0.1, 0.2, 0.4 and 0.8 s: all refused
        log = process.log_path.read_text()
        assert log.count(f"redis {where} unreachable (") == 1, log
        assert "subscription lost" not in log
        assert "Traceback" not in log and "get_server_data" not in log, log

        await late.start()

        async def ready_now() -> bool:
            return (await process.api("/readyz"))["ready"] is True

        await wait_for(ready_now)
        log = process.log_path.read_text()
        assert f"redis {where} answers again after" in log
        assert "this process is the publisher now" in log
        assert "Traceback" not in log
    finally:
        await late.stop()


def serve(**settings: str) -> subprocess.CompletedProcess:
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("DBACK_")},
        "DBACK_PLUGINS": "dback-redis",
        **settings,
    }
    return subprocess.run(
        [sys.executable, "-m", "dback_core", "serve", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_a_database_that_is_not_a_number_is_refused_naming_the_variable():
    result = serve(DBACK_REDIS_URL="redis://127.0.0.1:6379/abc")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: plugin dback-redis: DBACK_REDIS_URL names the database 'abc', which is not a "
        "number: Redis databases are numbered (redis://host:6379/0)"
    )
    assert "Traceback" not in result.stderr


def test_a_url_redis_py_cannot_read_is_refused_with_its_reason():
    result = serve(DBACK_REDIS_URL="redis://127.0.0.1:6379/0?db=two")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: plugin dback-redis: DBACK_REDIS_URL is not a URL redis-py accepts: "
        "Invalid value for 'db' in connection URL."
    )
