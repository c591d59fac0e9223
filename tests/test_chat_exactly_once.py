"""Chat that carries its source's position is shown once per process, whatever delivers it
again; where a provider resumes, and losses counted in ``/metrics``."""

from __future__ import annotations

import contextlib

from dback_core import hookimpl
from dback_core.plugin.events import Message
from dback_core.testing import Client, running_server
from dback_core.world.chat_ledger import REMEMBERED, ChatLedger


class Provider:
    @hookimpl
    def get_server_data(self):
        return {"1": {"id": "one", "name": "One"}}

    @hookimpl
    def get_user_data(self, server_id):
        return {"5": {"uid": "5", "username": "five", "status": "online"}}

    @hookimpl
    def startup(self, host):
        self.host = host


def said(text: str, position: int | None, source: str | None = "db") -> Message:
    return Message("1", "5", text, source=source, position=position)


def test_the_ledger_admits_each_position_once_and_forgets_within_bounds():
    ledger = ChatLedger()
    assert ledger.resume_position("db") is None
    assert [ledger.admit(said("x", n)) for n in (1, 2, 2, 3, 1)] == [True, True, False, True, False]
    assert ledger.duplicates == 2
    assert ledger.resume_position("db") == 3
    ledger.resume({"db": 10})
    assert ledger.resume_position("db") == 10
    # Without a position, or from another source, nothing is a duplicate.
    assert ledger.admit(said("x", None, None)) and ledger.admit(said("x", None, None))
    assert ledger.admit(said("x", 1, "other"))
    for n in range(4, REMEMBERED + 10):
        assert ledger.admit(said("x", n))
    # Forgotten positions count as shown: a replay of history long gone.
    assert not ledger.admit(said("x", 5))
    assert ledger.admit(said("x", REMEMBERED + 10))


async def test_a_message_delivered_twice_is_shown_once_and_counted():
    provider = Provider()
    async with running_server([("provider", provider)], environ={"DBACK_PLUGINS": ""}) as server:
        async with Client(server) as viewer:
            await viewer.join("one")
            for text, position in (("a", 1), ("b", 2), ("a", 1), ("c", 3), ("b", 2)):
                await server.publish(said(text, position), origin="provider")
            seen = [(await viewer.recv_type("message"))["data"]["message"] for _ in range(3)]
            assert seen == ["a", "b", "c"]
            with contextlib.suppress(TimeoutError):
                extra = await viewer.recv_type("message", timeout=0.5)
                raise AssertionError(f"shown twice: {extra}")
        assert provider.host.resume_position("db") == 3
        provider.host.chat_lost(4, "older than the replay window")
        metrics = server.metrics.render().decode()
        assert "dback_chat_duplicates_total 2.0" in metrics
        assert (
            'dback_chat_lost_total{plugin="provider",reason="older than the replay window"} 4.0'
            in metrics
        )
