"""The soak's checker on synthetic logs: a lost, a duplicated and a reordered chat message
are each found, rows outside a session's window are not owed, worlds are compared right."""

from __future__ import annotations

from array import array

import pytest

from tests.support.soak.checker import judge_session, owed_rows, world_differences
from tests.support.soak.config import FAULT_KINDS, parse_faults
from tests.support.soak.viewers import CHAT_KEY_BASE, Session, chat_key, version_of
from tests.support.soak.writer import Written


def key(sender: int, seq: int) -> int:
    return sender * CHAT_KEY_BASE + seq


def written(*rows: tuple[int, int, float]) -> list[Written]:
    """Rows (sender, seq, time): each committed 0.01 s after it started."""
    return [Written(key(sender, seq), at, at + 0.01) for sender, seq, at in rows]


#: Two senders, three rows each, one every second from t=10.
ROWS = written((0, 1, 10), (1, 1, 11), (0, 2, 12), (1, 2, 13), (0, 3, 14), (1, 3, 15))


def session(received: list[tuple[int, int]], opened: float = 0.0, **fields: object) -> Session:
    return Session("node0", opened, chat=array("q", [key(*r) for r in received]), **fields)


def judge(s: Session, uncertain: frozenset[int] = frozenset()):
    return judge_session(s, ROWS, set(uncertain), join_margin=1.0, leave_margin=2.0)


ALL = [(0, 1), (1, 1), (0, 2), (1, 2), (0, 3), (1, 3)]


def test_everything_once_in_order_is_clean():
    verdict = judge(session(ALL))
    assert (verdict.owed, verdict.lost, verdict.duplicated, verdict.reordered) == (6, 0, 0, 0)
    assert verdict.sessions_with_errors == 0


def test_a_lost_message_is_found():
    verdict = judge(session([r for r in ALL if r != (1, 2)]))
    assert (verdict.lost, verdict.duplicated, verdict.reordered) == (1, 0, 0)
    assert verdict.sessions_with_errors == 1 and "lost 1" in verdict.examples[0]


def test_a_duplicated_message_is_found():
    verdict = judge(session([*ALL[:3], (0, 2), *ALL[3:]]))
    assert (verdict.lost, verdict.duplicated, verdict.reordered) == (0, 1, 0)


def test_a_reordered_message_is_found_per_sender():
    # (0, 3) before (0, 2): one of sender 0's rows arrives after a later one.
    verdict = judge(session([(0, 1), (1, 1), (0, 3), (1, 2), (0, 2), (1, 3)]))
    assert (verdict.lost, verdict.duplicated, verdict.reordered) == (0, 0, 1)


def test_interleaving_of_different_senders_is_not_reordering():
    verdict = judge(session([(1, 1), (1, 2), (1, 3), (0, 1), (0, 2), (0, 3)]))
    assert verdict.reordered == 0


def test_chat_that_was_never_written_is_counted():
    verdict = judge(session([*ALL, (3, 9)]))
    assert verdict.foreign == 1


def test_rows_before_the_join_and_near_the_end_of_a_connection_are_not_owed():
    # Joined at 11.5: rows from 12.5 on are owed; ended at 15.5 by churn: rows committed
    # after 13.5 are not owed (they may be in flight when the viewer leaves).
    churned = session([], opened=11.5, closed=15.5, ended_by="churn")
    assert owed_rows(ROWS, churned, 1.0, 2.0) == {key(1, 2)}
    assert judge(churned).lost == 1
    # Received anyway, rows outside the window are fine; their order and copies still count.
    early = session([(0, 1), (1, 2), (0, 1)], opened=11.5, closed=15.5, ended_by="churn")
    verdict = judge(early)
    assert (verdict.lost, verdict.duplicated) == (0, 1)


def test_a_session_that_read_behind_ends_where_it_had_read_up_to():
    # Ended at 20 by a lost connection; its last chat, (0, 2) committed at 12.01, came at
    # 17.01: it read 5 s behind, so its process went away by 15 and only rows committed by
    # 13 are owed. Reading on time, rows up to 18 would be.
    behind = session([(0, 1), (1, 1), (0, 2)], opened=9.0, closed=20.0, ended_by="lost")
    behind.chat_at.extend([15.01, 16.01, 17.01])
    assert owed_rows(ROWS, behind, 1.0, 2.0) == {key(0, 1), key(1, 1), key(0, 2)}
    on_time = session([(0, 1), (1, 1), (0, 2)], opened=9.0, closed=20.0, ended_by="lost")
    on_time.chat_at.extend([10.02, 11.02, 12.02])
    assert owed_rows(ROWS, on_time, 1.0, 2.0) == {key(*row) for row in ALL}


def test_a_session_that_lasted_to_the_end_owes_everything_after_its_join():
    final = session([(0, 3)], opened=12.5)
    assert owed_rows(ROWS, final, 1.0, 2.0) == {key(0, 3), key(1, 3)}
    assert judge(final).lost == 1


def test_rows_whose_commit_is_uncertain_are_judged_nowhere():
    verdict = judge(session([*ALL, (0, 2)]), uncertain=frozenset({key(0, 2)}))
    assert (verdict.duplicated, verdict.foreign) == (0, 0)


def test_world_differences():
    truth = {"1": ("online", "m1 v3"), "2": ("offline", "m2 v1"), "3": ("dnd", "m3 v2")}
    assert world_differences(dict(truth), truth) == []
    seen = {"1": ("online", "m1 v3"), "3": ("dnd", "m3 v2")}  # offline: no character
    assert world_differences(seen, truth) == []
    assert world_differences({**seen, "1": ("idle", "m1 v2")}, truth) == ["1"]
    assert world_differences({"1": ("online", "m1 v3")}, truth) == ["3"]


def test_chat_texts_and_usernames_parse():
    assert chat_key("4:17") == key(4, 17)
    assert chat_key("hello") is None and chat_key("4:x") is None
    assert version_of("m3 v12") == 12 and version_of("someone") == -1


def test_fault_lists():
    assert parse_faults("all") == FAULT_KINDS
    assert parse_faults("none") == () == parse_faults("")
    assert parse_faults("pg_terminate, viewer_churn") == ("pg_terminate", "viewer_churn")
    with pytest.raises(ValueError, match="unknown fault"):
        parse_faults("pg_terminate,meteor")


def test_a_loss_says_when_the_session_ran_and_how_late_its_chat_came():
    received = [r for r in ALL if r != (1, 2)]
    arrivals = array("d", [10.51, 11.51, 12.51, 18.01, 19.01])  # (0,3) and (1,3) came 4 s late
    s = session(received, opened=5.0, closed=30.0, ended_by="churn", chat_at=arrivals)
    verdict = judge_session(s, ROWS, set(), join_margin=1.0, leave_margin=2.0, origin=5.0)
    assert verdict.lost == 1
    assert "session 0.0-25.0 s" in verdict.examples[0]
    assert "lost rows (first (1, 2)) committed 8.0-8.0 s" in verdict.examples[0]
    assert "chat latency worst 4.00 s, last 4.00 s" in verdict.examples[0]


def test_a_loss_says_whether_the_other_sessions_on_its_node_got_the_rows():
    lost = session([r for r in ALL if r != (1, 2)], closed=30.0, ended_by="churn")
    got = session(ALL, closed=30.0)
    missed_too = session([r for r in ALL if r != (1, 2)], closed=30.0)
    joined_later = session([(1, 3)], opened=14.5)
    verdict = judge_session(
        lost, ROWS, set(), 1.0, 2.0, neighbours=[lost, got, missed_too, joined_later]
    )
    assert verdict.examples[0].endswith("; 1 of 2 other sessions on node0 then got them")
