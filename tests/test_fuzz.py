"""Generated frames thrown at a live server while another client watches a guild.

The server runs on its own event loop in a thread; hypothesis drives an attacker through
the synchronous websockets client. After every example a marker message is published, and
the watcher must receive every marker, in order: the server never dies and the watcher
misses nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading

import pytest
import websockets.sync.client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus

from dback_core import hookimpl
from dback_core.plugin.events import Message
from dback_core.testing import running_server

MARKERS = itertools.count()


class OneGuild:
    @hookimpl
    def get_server_data(self):
        return {
            "1": {"id": "one", "name": "One"},
            "2": {"id": "two", "name": "Two", "passworded": True, "password": "pw"},
        }

    @hookimpl
    def get_user_data(self, server_id):
        return {"7": {"uid": "7", "username": "seven", "status": "online", "roleColor": False}}


@pytest.fixture(scope="module")
def live_server():
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    box = {}

    async def main():
        async with running_server(
            [("one", OneGuild())], environ={"DBACK_PLUGINS": ""}, max_connections_per_address=10_000
        ) as server:
            box["server"] = server
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    host, port = box["server"].address
    with websockets.sync.client.connect(f"ws://{host}:{port}") as watcher:
        assert json.loads(watcher.recv(timeout=5))["type"] == "server-list"
        watcher.send(json.dumps({"type": "connect", "data": {"server": "one"}}))
        assert json.loads(watcher.recv(timeout=5))["type"] == "server-join"
        yield loop, box["server"], watcher
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
connect_data = st.fixed_dictionaries(
    {},
    optional={
        "server": json_values | st.sampled_from(["one", "two", "1", "default", "", " "]),
        "password": json_values | st.just("pw"),
        "discordToken": json_values,
        "discordUser": json_values,
    },
)
messages = st.one_of(
    st.builds(lambda data: {"type": "connect", "data": data}, connect_data),
    st.builds(lambda sid: {"type": "get_user_data", "serverId": sid}, json_values),
    st.dictionaries(st.sampled_from(["type", "data", "serverId", "x"]), json_values, max_size=3),
    json_values,
)
frames = st.one_of(
    messages.map(json.dumps),
    st.text(max_size=300),
    st.binary(max_size=300),
)


@pytest.mark.slow
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(frames, min_size=1, max_size=8))
def test_generated_frames_never_hurt_the_server_or_a_watcher(live_server, batch):
    loop, server, watcher = live_server
    host, port = server.address
    try:
        with websockets.sync.client.connect(f"ws://{host}:{port}") as attacker:
            for frame in batch:
                attacker.send(frame)
            while True:
                reply = json.loads(attacker.recv(timeout=0.05))
                assert reply["type"] in {"server-list", "server-join", "user_data", "error"}
    except TimeoutError:
        pass
    except ConnectionClosed as closed:
        assert closed.rcvd is None or closed.rcvd.code in {1000, 1008, 1009}
    except InvalidStatus:
        pytest.fail("the server refused a fresh connection")
    marker = f"marker-{next(MARKERS)}"
    asyncio.run_coroutine_threadsafe(server.publish(Message("1", "7", marker, "c")), loop).result(5)
    frame = json.loads(watcher.recv(timeout=5))
    assert frame["type"] == "message" and frame["data"]["message"] == marker
