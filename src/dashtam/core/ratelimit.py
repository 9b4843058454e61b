"""Rate limiting over the `limits` library: Redis when configured, in-process memory otherwise.

When Redis fails the limiter keeps limiting with in-process counters (per replica, so looser,
but never "no limit at all" and never a 500), logs one warning per outage, reports itself "down"
on `/health`, and tries Redis again every few seconds until it answers.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.aio.strategies import RateLimiter as LimitsStrategy
from limits.errors import StorageError
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from dashtam.core.logging import log_event
from dashtam.core.net import client_ip
from dashtam.schemas.health import CheckResult

__all__ = [
    "RateLimitState",
    "RateLimiter",
    "client_ip",
    "parse_rule",
    "rate_limit_headers",
]

logger = logging.getLogger("dashtam.ratelimit")

Strategy = Literal["moving-window", "sliding-window-counter", "fixed-window"]

_STRATEGIES: dict[str, type[LimitsStrategy]] = {
    "moving-window": MovingWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
    "fixed-window": FixedWindowRateLimiter,
}
#: Everything a broken or unreachable Redis can raise through `limits` and redis-py.
_STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    StorageError,
    RedisError,
    OSError,
    TimeoutError,
)
_FALLBACK_DETAIL = "falling back to in-process counting"


@dataclass
class RateLimitState:
    """The outcome of one check, enough to answer the client and set the headers."""

    allowed: bool
    limit: int
    remaining: int
    #: Seconds until the window frees capacity again.
    reset_after: int
    #: Seconds the client should wait before retrying (0 when allowed).
    retry_after: int


def rate_limit_headers(state: RateLimitState) -> dict[str, str]:
    """The `RateLimit-*` headers for a response (plus `Retry-After` when refused)."""
    headers = {
        "RateLimit-Limit": str(state.limit),
        "RateLimit-Remaining": str(state.remaining),
        "RateLimit-Reset": str(state.reset_after),
    }
    if not state.allowed:
        headers["Retry-After"] = str(max(1, state.retry_after))
    return headers


@lru_cache(maxsize=128)
def parse_rule(rule: str) -> RateLimitItem:
    """Parse `"5/minute"`-style rules (cached: the same few rules are used on every request)."""
    return parse(rule)


class RateLimiter:
    """Count hits per (rule, identifiers) and say whether the next one is allowed.

    The identifiers are the whole key: callers must put the action first so two features that
    share a rule string never share a counter, e.g. `hit("10/minute", "login:ip", ip)`.
    """

    def __init__(
        self,
        *,
        redis_url: str | None,
        enabled: bool = True,
        strategy: Strategy = "moving-window",
        max_connections: int = 20,
        pool_timeout: float = 1.0,
        socket_timeout: float = 1.0,
        retry_interval: float = 5.0,
        key_prefix: str = "dashtam:ratelimit",
    ) -> None:
        """Set up the storage; nothing connects until the first hit.

        Args:
            redis_url: Shared Redis storage (many replicas); None counts in process memory.
            enabled: False turns every check into "allowed" (tests, trusted deployments).
            strategy: The `limits` window strategy (see the default's rationale below).
            max_connections: Redis pool size for the limiter.
            pool_timeout: Longest wait for a free pooled connection (s).
            socket_timeout: Connect and command timeout (s): a dead Redis must fail fast.
            retry_interval: How long to count in memory before trying Redis again (s).
            key_prefix: Prefix of every Redis key.
        """
        self.enabled = enabled
        self._retry_interval = retry_interval
        # The default, moving window, counts the exact hits of the last N seconds: no 2x burst
        # across a boundary (fixed window) and no estimate (sliding-window counter, whose reset
        # time under-reports, so clients would be told to retry too early). It keeps one entry
        # per hit — at most `limit` per key, ≤ 600 with our rules — which is cheap at our scale.
        strategy_cls = _STRATEGIES[strategy]
        self._memory: Storage = MemoryStorage()
        self._memory_strategy = strategy_cls(self._memory)
        self._pool: aioredis.BlockingConnectionPool | None = None
        self._redis_strategy: LimitsStrategy | None = None
        if redis_url:
            self._pool = aioredis.BlockingConnectionPool.from_url(
                redis_url,
                max_connections=max_connections,
                timeout=pool_timeout,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
            )
            options: dict[str, Any] = {"connection_pool": self._pool}
            storage = RedisStorage(
                "async+" + redis_url,
                implementation="redispy",
                wrap_exceptions=True,
                key_prefix=key_prefix,
                **options,
            )
            self._redis_strategy = strategy_cls(storage)
        self._outage_since: float | None = None
        self._next_retry = 0.0

    @property
    def backend(self) -> str:
        """`redis` or `memory`: where counts are shared (not where they are during an outage)."""
        return "redis" if self._redis_strategy is not None else "memory"

    @property
    def degraded(self) -> bool:
        """True while Redis is failing and hits are counted in this process only."""
        return self._outage_since is not None

    def __repr__(self) -> str:
        return f"RateLimiter(backend={self.backend!r}, degraded={self.degraded})"

    def health(self) -> CheckResult:
        """The limiter's state for `/health` (no I/O: it reports what the last hit saw)."""
        if self.degraded:
            return CheckResult(status="down", backend=self.backend, detail=_FALLBACK_DETAIL)
        return CheckResult(status="ok", backend=self.backend)

    async def hit(self, rule: str, *identifiers: str) -> RateLimitState:
        """Consume one unit of `rule` for these identifiers.

        Args:
            rule: A `limits` rule such as `"5/minute"` or `"100/hour"`.
            *identifiers: What is limited, action first (`"register"`, client ip).

        Returns:
            Whether the hit was allowed and what remains.
        """
        item = parse_rule(rule)
        if not self.enabled:
            return _unlimited(item)
        return await self._run(item, identifiers, consume=True)

    async def peek(self, rule: str, *identifiers: str) -> RateLimitState:
        """Report the state without consuming; `allowed` says whether a hit would pass."""
        item = parse_rule(rule)
        if not self.enabled:
            return _unlimited(item)
        return await self._run(item, identifiers, consume=False)

    async def clear(self, rule: str, *identifiers: str) -> None:
        """Forget every hit for these identifiers (e.g. failures after a successful login)."""
        item = parse_rule(rule)
        # Both stores: hits counted in memory during an outage must not outlive a success.
        await self._memory_strategy.clear(item, *identifiers)
        strategy = self._redis_strategy
        if strategy is not None and self.should_try_redis():
            try:
                await strategy.clear(item, *identifiers)
            except _STORAGE_ERRORS as exc:
                self.mark_outage(exc)
            else:
                self.mark_recovered()

    async def aclose(self) -> None:
        """Release the Redis connections (the limiter must not be used afterwards)."""
        if self._pool is not None:
            await self._pool.aclose()

    async def _run(
        self, item: RateLimitItem, identifiers: tuple[str, ...], *, consume: bool
    ) -> RateLimitState:
        strategy = self._redis_strategy
        if strategy is not None and self.should_try_redis():
            try:
                state = await _check(strategy, item, identifiers, consume=consume)
            except _STORAGE_ERRORS as exc:
                self.mark_outage(exc)
            else:
                self.mark_recovered()
                return state
        # The memory strategy cannot fail: it is both the embedded backend and the fallback.
        return await _check(self._memory_strategy, item, identifiers, consume=consume)

    async def hit_in_memory(self, rule: str, *identifiers: str) -> RateLimitState:
        """Consume one unit in this process's counters (for callers that just saw Redis fail)."""
        item = parse_rule(rule)
        if not self.enabled:
            return _unlimited(item)
        return await _check(self._memory_strategy, item, identifiers, consume=True)

    def should_try_redis(self) -> bool:
        """False while counting in memory between two attempts to reach Redis again."""
        return self._outage_since is None or time.monotonic() >= self._next_retry

    def mark_outage(self, exc: BaseException) -> None:
        """Count in memory from now on (and say so on `/health`) until Redis answers again."""
        now = time.monotonic()
        self._next_retry = now + self._retry_interval
        if self._outage_since is None:
            self._outage_since = now
            log_event(
                logger,
                "ratelimit.storage.unavailable",
                logging.WARNING,
                backend=self.backend,
                error_type=type(exc.__cause__ or exc).__name__,
                detail=_FALLBACK_DETAIL,
                retry_interval_s=self._retry_interval,
            )

    def mark_recovered(self) -> None:
        """Redis answered: share counts through it again."""
        if self._outage_since is not None:
            outage = round(time.monotonic() - self._outage_since, 1)
            self._outage_since = None
            log_event(logger, "ratelimit.storage.recovered", backend=self.backend, outage_s=outage)


def _unlimited(item: RateLimitItem) -> RateLimitState:
    return RateLimitState(
        allowed=True, limit=item.amount, remaining=item.amount, reset_after=0, retry_after=0
    )


async def _check(
    strategy: LimitsStrategy,
    item: RateLimitItem,
    identifiers: tuple[str, ...],
    *,
    consume: bool,
) -> RateLimitState:
    if consume:
        allowed = await strategy.hit(item, *identifiers)
    else:
        allowed = await strategy.test(item, *identifiers)
    stats = await strategy.get_window_stats(item, *identifiers)
    reset_after = max(0, math.ceil(stats.reset_time - time.time()))
    return RateLimitState(
        allowed=allowed,
        limit=item.amount,
        remaining=max(0, stats.remaining),
        reset_after=reset_after,
        retry_after=0 if allowed else max(1, reset_after),
    )
