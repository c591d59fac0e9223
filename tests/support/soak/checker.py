"""What every viewer should have seen, against what it saw.

Chat is judged per session (one connection of one viewer), so a churning viewer is judged
only while it was connected. A session *owes* a chat row when the row's INSERT started at
least ``join_margin`` seconds after the session's ``server-join`` arrived and its commit was
acknowledged at least ``leave_margin`` seconds before the connection ended (a session that
lasted to the end of the run owes everything written after it joined). The end is where the
session had read the server's stream up to: a viewer that reads behind (a slow reader whose
last chat came 10 s after its commit) learns of a connection its process lost - killed - only
once it has read what was sent before, so its end counts that much earlier. Rows outside
that window may arrive or not. Whatever a session received is judged whole:

- lost: an owed row that never arrived;
- duplicated: every arrival of a row after its first;
- reordered: a row arriving after a later row of the same sender (first arrivals only).

Rows whose commit was never acknowledged are judged nowhere. The world check compares each
viewer's final world (its last ``server-join`` plus the presences since) with PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tests.support.soak.viewers import CHAT_KEY_BASE, Session
from tests.support.soak.writer import Written


@dataclass
class ChatVerdict:
    sessions: int = 0
    owed: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    foreign: int = 0
    #: Sessions with at least one lost, duplicated or reordered row.
    sessions_with_errors: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, other: ChatVerdict) -> None:
        for name in ("sessions", "owed", "lost", "duplicated", "reordered", "foreign"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.sessions_with_errors += other.sessions_with_errors
        self.examples.extend(other.examples[: max(0, 5 - len(self.examples))])


def owed_rows(
    written: Iterable[Written], session: Session, join_margin: float, leave_margin: float
) -> set[int]:
    """The keys of the rows ``session`` must have received (see the module's docstring)."""
    written = list(written)
    if session.ended_by == "end":
        last_commit = session.closed
    else:
        committed = {row.key: row.committed for row in written}
        last_commit = session.closed - reading_behind(session, committed) - leave_margin
    return {
        row.key
        for row in written
        if row.started >= session.opened + join_margin and row.committed <= last_commit
    }


def reading_behind(session: Session, committed: Mapping[int, float]) -> float:
    """How far behind the server's stream ``session`` read when it ended: the time from its
    last chat row's commit (``committed``: per row key) to that row's arrival (0 without
    chat)."""
    if not session.chat_at:
        return 0.0
    last = committed.get(session.chat[len(session.chat_at) - 1])
    return 0.0 if last is None else max(0.0, session.chat_at[-1] - last)


def judge_session(
    session: Session,
    written: list[Written],
    uncertain: set[int],
    join_margin: float,
    leave_margin: float,
    label: str = "",
    origin: float = 0.0,
    neighbours: Sequence[Session] = (),
) -> ChatVerdict:
    verdict = ChatVerdict(sessions=1, foreign=session.foreign_chat)
    committed = {row.key: row.committed for row in written}
    owed = owed_rows(written, session, join_margin, leave_margin)
    verdict.owed = len(owed)
    seen: set[int] = set()
    highest: dict[int, int] = {}
    for key in session.chat:
        if key in uncertain:
            continue
        if key not in committed:
            verdict.foreign += 1
            continue
        if key in seen:
            verdict.duplicated += 1
            continue
        seen.add(key)
        sender, seq = divmod(key, CHAT_KEY_BASE)
        if seq < highest.get(sender, 0):
            verdict.reordered += 1
        highest[sender] = max(highest.get(sender, 0), seq)
    missing = owed - seen
    verdict.lost = len(missing)
    if verdict.lost or verdict.duplicated or verdict.reordered:
        verdict.sessions_with_errors = 1
        verdict.examples.append(
            f"{label} on {session.node} ended by {session.ended_by}: lost {verdict.lost}, "
            f"duplicated {verdict.duplicated}, reordered {verdict.reordered}; "
            + _timing(session, committed, missing, origin)
            + _witnesses(session, written, missing, neighbours)
        )
    return verdict


def _witnesses(
    session: Session, written: list[Written], missing: set[int], neighbours: Sequence[Session]
) -> str:
    """How many other sessions on the same node, connected from before the lost rows were
    written until after they were committed, received them all: none means the node never
    showed them, all means only this session missed them."""
    if not missing:
        return ""
    rows = [row for row in written if row.key in missing]
    start = min(row.started for row in rows)
    end = max(row.committed for row in rows)
    there = [
        other
        for other in neighbours
        if other is not session
        and other.node == session.node
        and other.opened <= start
        and other.closed >= end
    ]
    got = sum(1 for other in there if missing <= set(other.chat))
    return f"; {got} of {len(there)} other sessions on {session.node} then got them"


def _timing(
    session: Session, committed: Mapping[int, float], missing: set[int], origin: float
) -> str:
    """When the session ran, when its lost rows were committed and how late its chat came
    (times in seconds from ``origin``): a loss at the end of a session whose chat arrived
    seconds late is a client that fell behind, one in the middle of a live session is not."""
    latencies = [
        at - committed[key]
        for key, at in zip(session.chat, session.chat_at, strict=False)
        if key in committed
    ]
    text = f"session {session.opened - origin:.1f}-{session.closed - origin:.1f} s"
    if missing:
        times = sorted(committed[key] - origin for key in missing)
        first = divmod(min(missing, key=committed.__getitem__), CHAT_KEY_BASE)
        text += f", lost rows (first {first}) committed {times[0]:.1f}-{times[-1]:.1f} s"
    if latencies:
        text += f", chat latency worst {max(latencies):.2f} s, last {latencies[-1]:.2f} s"
    return text


def world_differences(
    seen: Mapping[str, tuple[str, str]], truth: Mapping[str, tuple[str, str]]
) -> list[str]:
    """uids whose status or name differ. A member the viewer does not show counts as shown
    ``offline`` (a client shows no character for either)."""
    different = []
    for uid in sorted(set(seen) | set(truth)):
        expected = truth.get(uid, ("offline", ""))
        shown = seen.get(uid, ("offline", ""))
        if expected[0] == shown[0] == "offline":
            continue
        if expected != shown:
            different.append(uid)
    return different
