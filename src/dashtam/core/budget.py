"""The per-user request budget on every authenticated request, shared by all replicas.

The budget is a sliding-window counter, the same estimate as the `limits` strategy of that
name: the previous window's count weighted by how much of it still overlaps the sliding window,
plus the current window's count. Windows are aligned on the epoch, so every replica names the
same Redis keys.

Asking Redis on every request would put a network round trip on the hottest path of the API
for a limit that only ever bites abusive clients. So each process *leases* units from the
shared counter and spends them locally: the first lease of a window is one unit, each further
one doubles, up to `max_lease` (and never more than a fiftieth of the limit). A user making a
request a minute is therefore counted exactly, one round trip each; a busy one costs a round
trip every few dozen requests. Leases never over-admit: a unit is spent only after Redis
granted it, and Redis grants only what fits. The price is the other way round: units a
replica leased but did not spend before the window moved on stay counted, so a user spread
thinly over R replicas may be refused up to R × lease units early.

Without Redis (the embedded default) the limiter's in-process counters are used, exactly; while
Redis fails, the same in-process counters take over and `/health` reports the limiter degraded.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from redis import asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from dashtam.core.ratelimit import RateLimiter, RateLimitState, parse_rule

#: KEYS: this window's counter, the previous window's counter.
#: ARGV: the limit, the counters' lifetime (s), the previous window's weight, units wanted.
#: Grants what fits (0 when nothing does) and returns {granted, current count, previous count}.
_LEASE_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
local free = math.floor(tonumber(ARGV[1]) - previous * tonumber(ARGV[3]) - current)
local granted = math.min(tonumber(ARGV[4]), math.max(free, 0))
if granted > 0 then
  current = redis.call('INCRBY', KEYS[1], granted)
  if current == granted then
    redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
  end
end
return {granted, current, previous}
"""

_ACTION = "user"
#: Forget leases of past windows once this many users have one (bounded memory).
_MAX_TRACKED = 10_000


@dataclass(frozen=True)
class WindowCounts:
    """A sliding-window counter's inputs at one instant."""

    limit: int
    window: float
    elapsed: float
    current: int
    previous: int

    @property
    def weight(self) -> float:
        """How much of the previous window still overlaps the sliding window."""
        return (self.window - self.elapsed) / self.window

    @property
    def used(self) -> float:
        """The estimated hits in the last `window` seconds."""
        return self.previous * self.weight + self.current

    def state(self, *, allowed: bool, unspent: int = 0) -> RateLimitState:
        """The budget as the client is told about it (`RateLimit-*`, `Retry-After`).

        Args:
            allowed: Whether this hit was admitted.
            unspent: Units this process leased and has not spent yet (counted in `current`
                but still available to the user).
        """
        remaining = max(0, math.floor(self.limit - self.used) + unspent)
        retry_after = 0 if allowed else max(1, math.ceil(self.seconds_until_admitted()))
        return RateLimitState(
            allowed=allowed,
            limit=self.limit,
            remaining=remaining,
            reset_after=math.ceil(max(0.0, self.window - self.elapsed)),
            retry_after=retry_after,
        )

    def seconds_until_admitted(self) -> float:
        """How long until one more hit fits, if nobody else spends the budget meanwhile."""
        if self.current + 1 > self.limit:
            # This window is spent by itself: wait for the next one, then for enough of this
            # window's hits (the next one's "previous") to slide out.
            slide_out = self.window * (1 - (self.limit - 1) / self.current)
            return (self.window - self.elapsed) + max(0.0, slide_out)
        if self.previous == 0:
            return 0.0
        # previous * (window - t) / window + current + 1 <= limit, solved for t.
        fits_at = self.window - (self.limit - self.current - 1) * self.window / self.previous
        return max(0.0, fits_at - self.elapsed)


@dataclass
class _Lease:
    """What this process holds of one user's budget in one window."""

    index: int
    granted: int = 0
    spent: int = 0
    next_size: int = 1
    #: The shared counts as of the last lease (they include every unit leased so far).
    counts: WindowCounts | None = None


class RequestBudget:
    """Counts authenticated requests per user against a rule such as `"600/minute"`."""

    def __init__(
        self,
        limiter: RateLimiter,
        redis: aioredis.Redis | None,
        *,
        max_lease: int = 100,
        key_prefix: str = "dashtam:ratelimit:budget",
    ) -> None:
        """Lease from Redis when both it and the limiter use it; else count in process.

        Args:
            limiter: Its switch and outage state apply; its in-process counters are the
                embedded backend and the fallback during a Redis outage.
            redis: The shared client (the KV store's), or None without Redis.
            max_lease: The most units one lease may take.
            key_prefix: Prefix of the counters' Redis keys.
        """
        self._limiter = limiter
        self._max_lease = max_lease
        self._prefix = key_prefix
        self._leases: dict[tuple[str, str], _Lease] = {}
        self._script: AsyncScript | None = None
        if redis is not None and limiter.enabled and limiter.backend == "redis":
            self._script = redis.register_script(_LEASE_SCRIPT)

    async def hit(self, rule: str, user: str) -> RateLimitState:
        """Spend one unit of `user`'s budget under `rule`; never raises for a Redis outage."""
        if self._script is None:
            return await self._limiter.hit(rule, _ACTION, user)
        item = parse_rule(rule)
        window = float(item.get_expiry())
        now = time.time()
        index = math.floor(now / window)
        lease = self._lease_for(rule, user, index)
        if lease.spent < lease.granted and lease.counts is not None:
            lease.spent += 1
            counts = replace(lease.counts, elapsed=now - index * window)
            return counts.state(allowed=True, unspent=lease.granted - lease.spent)
        if not self._limiter.should_try_redis():
            return await self._limiter.hit_in_memory(rule, _ACTION, user)
        size = min(lease.next_size, self._max_lease, max(1, item.amount // 50))
        try:
            granted, counts = await self._lease(item.amount, window, now, index, user, size)
        except (RedisError, OSError) as exc:
            self._limiter.mark_outage(exc)
            return await self._limiter.hit_in_memory(rule, _ACTION, user)
        self._limiter.mark_recovered()
        if granted == 0:
            return counts.state(allowed=False)
        lease.granted += granted
        lease.spent += 1
        lease.next_size = size * 2
        lease.counts = counts
        return counts.state(allowed=True, unspent=lease.granted - lease.spent)

    def _lease_for(self, rule: str, user: str, index: int) -> _Lease:
        key = (rule, user)
        lease = self._leases.get(key)
        if lease is None or lease.index != index:
            if lease is None and len(self._leases) >= _MAX_TRACKED:
                self._forget_before(index)
            lease = _Lease(index=index)
            self._leases[key] = lease
        return lease

    def _forget_before(self, index: int) -> None:
        stale = [key for key, lease in self._leases.items() if lease.index < index]
        for key in stale or list(self._leases)[: _MAX_TRACKED // 2]:
            del self._leases[key]

    async def _lease(
        self, limit: int, window: float, now: float, index: int, user: str, size: int
    ) -> tuple[int, WindowCounts]:
        assert self._script is not None
        elapsed = now - index * window
        counter = f"{self._prefix}:{user}:{limit}:{int(window)}"
        granted, current, previous = await self._script(
            keys=[f"{counter}:{index}", f"{counter}:{index - 1}"],
            args=[limit, math.ceil(2 * window), (window - elapsed) / window, size],
        )
        counts = WindowCounts(
            limit=limit,
            window=window,
            elapsed=elapsed,
            current=int(current),
            previous=int(previous),
        )
        return int(granted), counts
