"""Guessing a PostgreSQL guild's password (scrypt, checked by the plugin's ``authorize``) is
slow for the guesser only: real ``dback serve``, real PostgreSQL, real WebSocket clients from
distinct loopback addresses guessing while a viewer from another address logs in.

The core's guessing throttle decides before the plugin is asked, so the guessers cost a few
scrypt checks each; the checks that do run are shared round-robin between addresses, so the
viewer's own check never waits behind a guesser's queue.
"""

from __future__ import annotations

import pytest
from postgres_helpers import seed_guild

from dback_postgres.passwords import hash_password
from tests.support.password_flood import (
    LOCKOUT_AFTER,
    check,
    guess_while_a_viewer_logs_in,
    served,
)

GUILD = "232769614004748288"
PASSWORD = "correct horse battery staple"

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.mark.parametrize(
    "counts",
    [{"127.0.0.2": 200}, {"127.0.0.2": 256, "127.0.0.3": 256, "127.0.0.4": 256}],
    ids=["200 from one address", "768 from three"],
)
async def test_scrypt_guessers_are_held_back_while_another_address_logs_in(
    counts, db, dsn, tmp_path
):
    await seed_guild(db, GUILD, members=3)
    await db.execute(
        "UPDATE servers SET passworded = true, password_hash = $2 WHERE server_id = $1",
        GUILD,
        hash_password(PASSWORD),
    )
    env = {
        "DBACK_PLUGINS": "dback-postgres",
        "DBACK_POSTGRES_DSN": dsn,
        "DBACK_PASSWORD_LOCKOUT_AFTER": str(LOCKOUT_AFTER),
    }
    async with served(env, tmp_path / "dback.log") as server:
        result, logins = await guess_while_a_viewer_logs_in(server.url, GUILD, PASSWORD, counts)
    check(result, logins, server.records())
