"""Chat resumes where another process delivered it up to, and what cannot be replayed is
counted as lost, never dropped silently."""

from __future__ import annotations

from postgres_helpers import seed_guild

from dback_postgres import queries
from dback_postgres.chat import ChatCursor


async def insert(db, server_id: str, uid: str, text: str, age_seconds: float = 0.0) -> int:
    return await db.fetchval(
        "INSERT INTO messages (server_id, user_id, message, created_at) "
        "VALUES ($1, $2, $3, now() - make_interval(secs => $4)) RETURNING message_id",
        server_id,
        uid,
        text,
        age_seconds,
    )


async def test_the_cursor_resumes_after_a_handed_position_and_counts_what_is_too_old(db):
    server_id = "232769614004748288"
    uid = (await seed_guild(db, server_id, members=1))[0]
    handed = await insert(db, server_id, uid, "delivered by the last publisher", 7200)
    for n in range(3):
        await insert(db, server_id, uid, f"too old {n}", 7200)
    recent = [await insert(db, server_id, uid, f"recent {n}") for n in range(2)]
    lost: list[tuple[int, str]] = []
    cursor = ChatCursor(60.0, lambda count, reason: lost.append((count, reason)))
    cursor.resume(handed)
    rows = await cursor.missed(db)
    assert [row["message_id"] for row in rows] == recent
    assert [queries.message(row).position for row in rows] == recent
    assert lost == [(3, "older than the replay window")]
    # A lower position handed later changes nothing: the cursor never goes back.
    cursor.resume(handed)
    assert cursor.last_id == recent[-1]


async def test_a_cursor_told_nothing_starts_from_now(db):
    server_id = "232769614004748288"
    uid = (await seed_guild(db, server_id, members=1))[0]
    newest = await insert(db, server_id, uid, "history")
    cursor = ChatCursor(60.0)
    cursor.resume(None)
    assert await cursor.missed(db) == []
    assert cursor.last_id == newest
