"""Electing the one process that runs the providers: a lease in Redis with a fencing number.

The lease is a key ``P:lease`` holding the holder's process id, set only if absent and with
an expiry; its holder renews it well before it expires. Whoever takes it also increments
``P:fence`` in the same script, so every holder gets a number higher than all before it.
A publisher puts that number on what it publishes, and receivers ignore lower numbers: a
publisher that was paused (SIGSTOP, a long GC, a network partition) and wakes up after its
lease passed to another cannot be heard over the new one. Its snapshot writes are guarded
too: each write transaction WATCHes the lease and runs only while the lease is still its own.
Renewal and those transactions take turns on one lock: renewing touches the watched key, and
must not make this process's own transaction fail.

Redis without persistence forgets ``P:fence`` when it restarts; the next lease would get
fence 1 again, and every process that saw a higher one would ignore the new publisher. So
each process remembers the highest fence it has seen (``Lease.highest``: its own leases and
those on the bus) and passes it to the script, which never hands out a number at or below it.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from dback_redis.snapshot import Keys

#: Take the lease if nobody holds it; return the new fencing number - above ARGV[3], the
#: highest the caller has seen - or nil.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    local fence = redis.call('INCR', KEYS[2])
    local known = tonumber(ARGV[3])
    if fence <= known then
        fence = known + 1
        redis.call('SET', KEYS[2], fence)
    end
    return fence
end
return false
"""

#: Extend the lease if it is still ours; 1 if it was, 0 if not.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

#: Give the lease up if it is still ours, so another process takes over at once.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseLost(RuntimeError):
    """The lease is no longer this process's: it must stop publishing at once."""


class Lease:
    """This process's side of the publisher lease."""

    def __init__(self, redis: Redis, keys: Keys, holder: str, seconds: float) -> None:
        self.redis = redis
        self.keys = keys
        self.holder = holder
        self.milliseconds = max(int(seconds * 1000), 100)
        #: Held by a renewal and by a guarded transaction, never by both at once.
        self.lock = asyncio.Lock()
        #: The highest fence this process has seen: a lease it takes gets a higher one.
        self.highest = 0

    def saw(self, fence: int) -> None:
        self.highest = max(self.highest, fence)

    async def acquire(self) -> int | None:
        """The new fencing number if this process took the lease, else None."""
        fence = await self.redis.eval(
            _ACQUIRE,
            2,
            self.keys.lease,
            self.keys.fence,
            self.holder,
            self.milliseconds,
            self.highest,
        )
        if not fence:
            return None
        self.saw(int(fence))
        return int(fence)

    async def renew(self) -> bool:
        """Whether the lease was still ours (and is now extended)."""
        async with self.lock:
            renewed = await self.redis.eval(
                _RENEW, 1, self.keys.lease, self.holder, self.milliseconds
            )
        return bool(renewed)

    async def held(self) -> bool:
        """Whether the lease is still ours as far as Redis can say now: a guarded write
        that failed with ``WatchError`` because its connection was lost (a failover) lost
        the write, not the lease. True when Redis cannot be asked: the election, whose
        renewals then fail, decides."""
        try:
            return bool(await self.redis.get(self.keys.lease) == self.holder)
        except (RedisError, OSError):
            return True

    async def release(self) -> None:
        await self.redis.eval(_RELEASE, 1, self.keys.lease, self.holder)

    async def guard(self, pipe: Pipeline) -> None:
        """Put ``pipe`` in WATCH mode on the lease and check that it is ours; the caller's
        MULTI/EXEC then fails if the lease changes hands before it runs. Call it holding
        ``lock``."""
        await pipe.watch(self.keys.lease)
        if await pipe.get(self.keys.lease) != self.holder:
            await pipe.reset()  # type: ignore[no-untyped-call]  # untyped in redis-py
            raise LeaseLost("the publisher lease passed to another process")
        pipe.multi()  # type: ignore[no-untyped-call]  # untyped in redis-py
