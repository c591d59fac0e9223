"""A plugin can refuse a login with a message the client can act on (``AccessRefused``)."""

from __future__ import annotations

from dback_core import AccessRefused, hookimpl
from dback_core.testing import Client, running_server
from dback_core.wire import protocol


class Busy:
    """Refuses every token with its own reason, except one it admits."""

    @hookimpl
    def authorize(self, server_id, credentials):
        if credentials.get("discordToken") == "good-token":
            return True
        raise AccessRefused("Login is busy; try again in a few seconds.")


class Later:
    """Would admit anyone: it must not be asked once an earlier plugin refused."""

    asked = 0

    @hookimpl
    def authorize(self, server_id, credentials):
        Later.asked += 1
        return True


async def test_a_refusal_with_a_reason_reaches_the_client_and_ends_the_decision():
    async with running_server([("busy", Busy()), ("later", Later())]) as server:
        async with Client(server) as client:
            refused = await client.join("oauth", discordToken="some-token")
            admitted = await client.join("oauth", discordToken="good-token")
    assert refused == {
        "type": "error",
        "data": {"message": "Login is busy; try again in a few seconds."},
    }
    assert admitted["type"] == "server-join"
    assert Later.asked == 0


async def test_a_refusal_without_a_message_shows_the_generic_one():
    class Silent:
        @hookimpl
        def authorize(self, server_id, credentials):
            raise AccessRefused()

    async with running_server([("silent", Silent())]) as server:
        async with Client(server) as client:
            refused = await client.join("oauth", discordToken="some-token")
    assert refused["data"]["message"] == protocol.LOGIN_REFUSED
