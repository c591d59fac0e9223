"""Guild passwords: set with the real ``dback postgres set-password``, stored as scrypt hashes,
checked by the plugin's ``authorize`` when a WebSocket client joins."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner
from postgres_helpers import listening, run_dback, seed_guild, wait_until

from dback_core.testing import Client, running_server
from dback_core.wire import protocol
from dback_postgres.commands import postgres
from dback_postgres.passwords import hash_password, verify_password

GUILD = "232769614004748288"


def test_a_hash_describes_itself_and_only_its_password_matches():
    first, second = hash_password("open sesame"), hash_password("open sesame")
    assert first.startswith("scrypt$n=16384,r=8,p=1$")
    assert first != second, "every hash has its own salt"
    assert "open sesame" not in first
    assert verify_password("open sesame", first) and verify_password("open sesame", second)
    assert not verify_password("open sesame!", first)
    assert not verify_password("\udcff", first), "a lone surrogate is a wrong password"
    assert not verify_password("open sesame", "open sesame"), "plain text never matches"
    assert not verify_password("x", "scrypt$n=zero$$")
    with pytest.raises(ValueError):
        hash_password("")


@pytest.mark.postgres
async def test_set_password_then_join_with_the_right_one_and_not_a_wrong_one(postgres_env, db, dsn):
    await seed_guild(db, GUILD, members=2)
    result = run_dback("postgres", "set-password", GUILD, "--stdin", dsn=dsn, stdin="hunter2\n")
    assert result.returncode == 0, result.stderr
    assert "passworded" in result.stdout
    stored = await db.fetchrow(
        "SELECT passworded, password_hash FROM servers WHERE server_id = $1", GUILD
    )
    assert stored["passworded"] is True
    assert (
        stored["password_hash"].startswith("scrypt$") and "hunter2" not in stored["password_hash"]
    )

    async with running_server() as server:
        await listening(server)
        async with Client(server) as client:
            assert client.server_list[GUILD]["passworded"] is True
            assert "password" not in client.server_list[GUILD]
            refused = await client.join(GUILD, password="hunter3")
            assert refused["type"] == "error"
            assert refused["data"]["message"] == protocol.LOGIN_REFUSED
            required = await client.join(GUILD)
            assert required["data"]["message"] == protocol.LOGIN_REQUIRED
            joined = await client.join(GUILD, password="hunter2")
            assert joined["type"] == "server-join"
            assert len(joined["data"]["users"]) == 2

        cleared = run_dback("postgres", "set-password", GUILD, "--clear", dsn=dsn)
        assert cleared.returncode == 0, cleared.stderr
        await wait_until(lambda: not server.directory.servers[GUILD].passworded)
        async with Client(server) as client:
            assert (await client.join(GUILD))["type"] == "server-join"
    assert (
        await db.fetchval("SELECT password_hash FROM servers WHERE server_id = $1", GUILD) is None
    )


@pytest.mark.postgres
async def test_the_prompt_asks_twice_and_bad_input_is_refused(db, dsn):
    await seed_guild(db, GUILD, members=1)
    # In a thread: the command runs its own event loop, as it does from a shell.
    mismatch = await asyncio.to_thread(
        CliRunner().invoke,
        postgres,
        ["set-password", GUILD, "--dsn", dsn],
        input="one\ntwo\nthree\nthree\n",
    )
    assert mismatch.exit_code == 0, mismatch.output
    assert "do not match" in mismatch.output
    stored = await db.fetchval("SELECT password_hash FROM servers WHERE server_id = $1", GUILD)
    assert verify_password("three", stored) and not verify_password("one", stored)

    unknown = run_dback("postgres", "set-password", "404", "--stdin", dsn=dsn, stdin="x\n")
    assert unknown.returncode == 1 and "no guild '404'" in unknown.stderr
    empty = run_dback("postgres", "set-password", GUILD, "--stdin", dsn=dsn, stdin="\n")
    assert empty.returncode == 1 and "empty" in empty.stderr
    plain = run_dback("postgres", "status", dsn=dsn)
    assert plain.returncode == 0, plain.stderr
    assert await db.fetchval("SELECT password_hash FROM servers WHERE server_id = $1", GUILD) == (
        stored
    )


@pytest.mark.postgres
async def test_a_plain_text_password_cannot_be_stored(db):
    await seed_guild(db, GUILD, members=1)
    with pytest.raises(Exception, match="servers_password_hash_format"):
        await db.execute("UPDATE servers SET password_hash = 'hunter2' WHERE server_id = $1", GUILD)


@pytest.mark.postgres
async def test_a_new_password_takes_out_viewers_admitted_with_the_old_one(postgres_env, db, dsn):
    await seed_guild(db, GUILD, members=2)
    first = run_dback("postgres", "set-password", GUILD, "--stdin", dsn=dsn, stdin="hunter2\n")
    assert first.returncode == 0, first.stderr
    async with running_server() as server:
        await listening(server)
        async with Client(server) as viewer:
            assert (await viewer.join(GUILD, password="hunter2"))["type"] == "server-join"
            second = run_dback(
                "postgres", "set-password", GUILD, "--stdin", dsn=dsn, stdin="swordfish\n"
            )
            assert second.returncode == 0, second.stderr
            told = await viewer.recv_type("error", timeout=10)
            assert told["data"]["message"] == protocol.ACCESS_CHANGED
            await wait_until(lambda: not server.fanout.by_guild.get(GUILD))
            assert (await viewer.join(GUILD, password="hunter2"))["type"] == "error"
            assert (await viewer.join(GUILD, password="swordfish"))["type"] == "server-join"
