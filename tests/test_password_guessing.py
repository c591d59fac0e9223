"""Guessing a guild password compared by the core (a ``password`` in a plugin's guild record,
here the mock's) is slow for the guesser only: real ``dback serve``, real WebSocket clients
from distinct loopback addresses, hundreds of connections guessing while a viewer from
another address logs in.

Run with ``DBACK_PASSWORD_LOCKOUT_AFTER=5`` so that each guessing address reaches its
lockout within the test (the defaults are covered in ``test_guessing.py``).
"""

from __future__ import annotations

import pytest

from tests.support.password_flood import LOCKOUT_AFTER, check, guess_while_a_viewer_logs_in, served

GUILD = "oauth"  # the mock's passworded guild
PASSWORD = "open sesame"

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "counts",
    [{"127.0.0.2": 200}, {"127.0.0.2": 256, "127.0.0.3": 256, "127.0.0.4": 256}],
    ids=["200 from one address", "768 from three"],
)
async def test_guessers_are_held_back_while_another_address_logs_in(counts, tmp_path):
    env = {
        "DBACK_PLUGINS": "dback-mock",
        "DBACK_MOCK_PASSWORD": PASSWORD,
        "DBACK_PASSWORD_LOCKOUT_AFTER": str(LOCKOUT_AFTER),
    }
    async with served(env, tmp_path / "dback.log") as server:
        result, logins = await guess_while_a_viewer_logs_in(server.url, GUILD, PASSWORD, counts)
    check(result, logins, server.records())
