"""The state of each gateway connection (shard), for the health detail and the status page.

A bot in many guilds runs several shards, each with its own connection to Discord; one can
be reconnecting while the others serve. Operators see each one's state in ``dback plugins``
and on the status page, and the plugin reports itself serving only when all are up.
"""

from __future__ import annotations

#: READY sent, guilds still arriving.
CONNECTING = "connecting"
#: Serving: the session is up (after READY and the guilds, or after a resume).
READY = "ready"
#: The connection was lost; discord.py is resuming or identifying again.
RECONNECTING = "reconnecting"

#: What the ``shards`` setting may say instead of a count: Discord's recommended count.
AUTO = "auto"


class ShardStates:
    """Shard id -> state, for the shards this client runs."""

    def __init__(self) -> None:
        self._states: dict[int, str] = {}

    def expect(self, count: int) -> None:
        """The client runs ``count`` shards: those not heard from yet are connecting."""
        for shard_id in range(count):
            self._states.setdefault(shard_id, CONNECTING)

    def mark(self, shard_id: int, state: str) -> None:
        self._states[shard_id] = state

    def all_ready(self) -> bool:
        return bool(self._states) and all(state == READY for state in self._states.values())

    def describe(self) -> str | None:
        """``gateway ready`` for one connection, ``shards 0 ready, 1 reconnecting, ...``."""
        if not self._states:
            return None
        if len(self._states) == 1:
            return f"gateway {next(iter(self._states.values()))}"
        listed = ", ".join(f"{shard} {state}" for shard, state in sorted(self._states.items()))
        return f"{len(self._states)} shards: {listed}"


def sharding_count(setting: int | str, recommended: int) -> int:
    """The number of shards to run: the fixed count, or Discord's recommendation for
    ``auto`` (at least one)."""
    if setting == AUTO:
        return max(1, recommended)
    return int(setting)
