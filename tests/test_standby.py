"""A plugin that holds the others back (``dback_holds_others``): they start on standby - not
started, not asked, shown as ``standby`` - and run only while the holder releases them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from dback_core import hookimpl
from dback_core.plugin.events import Message
from dback_core.testing import Client, running_server


class Holder:
    """Releases the others at startup when told to; a test releases or holds them later."""

    dback_holds_others = True

    def __init__(self, release_at_start: bool):
        self.release_at_start = release_at_start
        self.host = None

    @hookimpl
    async def startup(self, host):
        self.host = host
        if self.release_at_start:
            await host.release_plugins()


class Provider:
    """One guild with a chatty event source; records its lifecycle."""

    def __init__(self):
        self.calls: list[str] = []
        self.chat = asyncio.Queue()

    @hookimpl
    def startup(self):
        self.calls.append("startup")

    @hookimpl
    def shutdown(self):
        self.calls.append("shutdown")

    @hookimpl
    def get_server_data(self):
        return {"7": {"id": "seven", "name": "Seven"}}

    @hookimpl
    def get_user_data(self, server_id):
        return {"1": {"uid": "1", "username": "one", "status": "online"}}

    @hookimpl
    def event_sources(self):
        return [self.stream]

    async def stream(self) -> AsyncIterator[Message]:
        while True:
            yield Message("7", "1", await self.chat.get())


def plugins(holder, provider):
    return [("holder", holder), ("provider", provider)]


async def test_held_plugins_are_not_started_asked_or_ready_until_released():
    holder, provider = Holder(release_at_start=False), Provider()
    environ = {"DBACK_PLUGINS": ""}
    async with running_server(plugins(holder, provider), environ=environ) as server:
        assert provider.calls == []
        assert server.directory.servers == {}
        assert server.readiness() == {}  # a provider on standby serves nobody: not waited for
        described = {entry["name"]: entry for entry in server.plugins.describe()["plugins"]}
        assert described["provider"]["status"] == "standby"
        async with Client(server) as client:
            assert client.server_list == {}
            await holder.host.release_plugins()
            listed = await client.recv_type("server-list")
            assert set(listed["data"]) == {"7"}
            assert provider.calls == ["startup"]
            joined = await client.join("seven")
            assert set(joined["data"]["users"]) == {"1"}
            provider.chat.put_nowait("live")
            chat = await client.recv_type("message")
            assert chat["data"]["message"] == "live"

            await holder.host.hold_plugins()
            assert provider.calls == ["startup", "shutdown"]
            listed = await client.recv_type("server-list")
            assert listed["data"] == {}
            assert server.sources.tasks == []
            described = {entry["name"]: entry for entry in server.plugins.describe()["plugins"]}
            assert described["provider"]["status"] == "standby"
    assert provider.calls == ["startup", "shutdown"]  # not shut down twice


async def test_released_during_startup_they_start_like_any_plugin():
    holder, provider = Holder(release_at_start=True), Provider()
    async with running_server(plugins(holder, provider), environ={"DBACK_PLUGINS": ""}) as server:
        assert provider.calls == ["startup"]
        assert set(server.directory.servers) == {"7"}
        assert len(server.sources.tasks) == 1
        assert server.readiness() == {}
    assert provider.calls == ["startup", "shutdown"]


class StuckProvider(Provider):
    """A provider whose event source ignores its cancellation for as long as ``stuck`` is
    not set, like a source caught in a library's cleanup, and then yields one more event."""

    def __init__(self):
        super().__init__()
        self.stuck = asyncio.Event()
        self.ended = asyncio.Event()

    async def stream(self) -> AsyncIterator[Message]:
        while True:
            try:
                yield Message("7", "1", await self.chat.get())
            except asyncio.CancelledError:
                await self.stuck.wait()
                self.ended.set()
                yield Message("7", "1", "from beyond")
                return


async def test_silenced_plugins_are_dropped_at_once_and_a_stuck_source_is_abandoned(caplog):
    holder, provider = Holder(release_at_start=True), StuckProvider()
    async with running_server(plugins(holder, provider), environ={"DBACK_PLUGINS": ""}) as server:
        async with Client(server) as client:
            await client.join("seven")
            provider.chat.put_nowait("before")
            assert (await client.recv_type("message"))["data"]["message"] == "before"

            holder.host.silence_plugins()
            provider.chat.put_nowait("silenced")
            await asyncio.sleep(0.2)  # the source read it: the host dropped it
            assert provider.chat.empty()
            described = {entry["name"]: entry for entry in server.plugins.describe()["plugins"]}
            assert described["provider"]["status"] == "standby"

            loop = asyncio.get_running_loop()
            started = loop.time()
            await holder.host.hold_plugins()
            took = loop.time() - started
            assert took < 5, f"hold_plugins waited {took:.1f}s for a source that never ends"
            assert provider.calls == ["startup", "shutdown"]
            assert server.sources.tasks == []
            assert "did not end within 1.0s of cancellation; abandoned" in caplog.text

            await holder.host.release_plugins()
            await client.join("seven")  # taken out while the guild was gone
            provider.stuck.set()  # the abandoned source ends, yielding once more
            await asyncio.wait_for(provider.ended.wait(), 5)
            await asyncio.sleep(0.2)
            provider.chat.put_nowait("after")
            seen = await client.recv_type("message")
            assert seen["data"]["message"] == "after"  # never "silenced" nor "from beyond"


async def test_plugins_silenced_but_not_yet_held_are_shut_down_with_the_server():
    holder, provider = Holder(release_at_start=True), Provider()
    async with running_server(plugins(holder, provider), environ={"DBACK_PLUGINS": ""}):
        holder.host.silence_plugins()
        assert provider.calls == ["startup"]
    assert provider.calls == ["startup", "shutdown"]
