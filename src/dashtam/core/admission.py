"""Admitting an authenticated request: its session's cached state and the user's request budget.

Both are asked of Redis on every authenticated request, so they are asked together: one Lua
script reads the session's cache entry and counts the hit against the user's budget in a single
round trip. Through the `limits` library the budget alone took two round trips (the hit, then
the window statistics for the `RateLimit-*` headers), and the session check a third; on the
hottest path of the API those round trips cost more than the request's own work.

The budget is a sliding-window counter, the same estimate as `limits`' strategy of that name:
the previous window's count weighted by how much of it still overlaps the sliding window, plus
the current window's count. Windows are aligned on the epoch, so every replica names the same
keys. Refused hits are not counted, so a client that backs off gets its budget back on time.

Without Redis (the embedded default) or while Redis fails, the session state comes from the KV
store (or the database) and the budget from the limiter's in-process counters, which also makes
`/health` report the limiter as degraded.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from dashtam.core.kv import KeyValueStore, KeyValueUnavailable, RedisKeyValueStore
from dashtam.core.ratelimit import RateLimiter, RateLimitState, parse_rule

#: KEYS: the session's cache entry, this window's counter, the previous window's counter.
#: ARGV: the limit, the counters' lifetime (s), the previous window's weight (0..1].
#: Returns {cached session state or false, 1 if admitted else 0, current count, previous count}.
_ADMIT_SCRIPT = """
local state = redis.call('GET', KEYS[1])
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local previous = tonumber(redis.call('GET', KEYS[3]) or '0')
local limit = tonumber(ARGV[1])
if previous * tonumber(ARGV[3]) + current + 1 > limit then
  return {state, 0, current, previous}
end
current = redis.call('INCR', KEYS[2])
if current == 1 then
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
end
return {state, 1, current, previous}
"""

_BUDGET_ACTION = "user"


@dataclass(frozen=True)
class Admission:
    """What one admission check found.

    Attributes:
        cached_state: The session's cache entry, or None when it is not cached (or unreadable).
        cache_readable: False when the KV store could not be read (then nothing should be
            written to it either: the caller reads the database and moves on).
        budget: The user's request budget after this hit.
    """

    cached_state: bytes | None
    cache_readable: bool
    budget: RateLimitState


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

    def state(self, *, allowed: bool) -> RateLimitState:
        """The budget as the client is told about it (`RateLimit-*`, `Retry-After`)."""
        remaining = max(0, math.floor(self.limit - self.used))
        until_next_window = max(0.0, self.window - self.elapsed)
        retry_after = 0 if allowed else max(1, math.ceil(self.seconds_until_admitted()))
        return RateLimitState(
            allowed=allowed,
            limit=self.limit,
            remaining=remaining,
            reset_after=math.ceil(until_next_window),
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


class AdmissionGate:
    """Checks a request's session cache entry and counts its user's budget, together."""

    def __init__(
        self,
        kv: KeyValueStore,
        limiter: RateLimiter,
        *,
        key_prefix: str = "dashtam:ratelimit:budget",
    ) -> None:
        """Use one script round trip when both the KV store and the limiter live in Redis.

        Args:
            kv: The KV store holding the session cache.
            limiter: The per-user limiter: its switch, its outage state and, without Redis,
                its counters.
            key_prefix: Prefix of the budget counters' Redis keys.
        """
        self._kv = kv
        self._limiter = limiter
        self._prefix = key_prefix
        self._redis = kv if isinstance(kv, RedisKeyValueStore) else None
        self._script: AsyncScript | None = None
        if self._redis is not None and limiter.enabled and limiter.backend == "redis":
            self._script = self._redis.client.register_script(_ADMIT_SCRIPT)

    async def admit(self, *, state_key: str, rule: str, user: str) -> Admission:
        """Read `state_key` from the KV store and count one hit of `rule` for `user`.

        Args:
            state_key: The session's cache key (as given to the KV store).
            rule: The budget, e.g. `"600/minute"`.
            user: Whose budget (the user id).

        Returns:
            The cached state and the budget; never raises for a Redis outage.
        """
        if self._script is not None and self._limiter.should_try_redis():
            try:
                return await self._admit_in_redis(state_key, rule, user)
            except (RedisError, OSError) as exc:
                self._limiter.mark_outage(exc)
                budget = await self._limiter.hit_in_memory(rule, _BUDGET_ACTION, user)
                return Admission(cached_state=None, cache_readable=False, budget=budget)
        try:
            cached, readable = await self._kv.get(state_key), True
        except KeyValueUnavailable:
            cached, readable = None, False
        if self._script is not None:
            # Between two attempts to reach Redis again: count in memory.
            budget = await self._limiter.hit_in_memory(rule, _BUDGET_ACTION, user)
        else:
            budget = await self._limiter.hit(rule, _BUDGET_ACTION, user)
        return Admission(cached_state=cached, cache_readable=readable, budget=budget)

    async def _admit_in_redis(self, state_key: str, rule: str, user: str) -> Admission:
        assert self._script is not None and self._redis is not None
        item = parse_rule(rule)
        window = float(item.get_expiry())
        now = time.time()
        index = math.floor(now / window)
        elapsed = now - index * window
        counter = f"{self._prefix}:{user}"
        state, admitted, current, previous = await self._script(
            keys=[self._redis.full_key(state_key), f"{counter}:{index}", f"{counter}:{index - 1}"],
            args=[item.amount, math.ceil(2 * window), (window - elapsed) / window],
        )
        self._limiter.mark_recovered()
        counts = WindowCounts(
            limit=item.amount,
            window=window,
            elapsed=elapsed,
            current=int(current),
            previous=int(previous),
        )
        return Admission(
            cached_state=state if isinstance(state, bytes) else None,
            cache_readable=True,
            budget=counts.state(allowed=bool(admitted)),
        )
