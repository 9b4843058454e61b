"""Rate-limit headers, the disabled switch, and the Redis-outage fallback logic."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from limits import RateLimitItem
from limits.errors import StorageError
from limits.util import WindowStats

from dashtam.core.ratelimit import RateLimiter, RateLimitState, rate_limit_headers


def state(**overrides: Any) -> RateLimitState:
    values: dict[str, Any] = {
        "allowed": True,
        "limit": 5,
        "remaining": 4,
        "reset_after": 60,
        "retry_after": 0,
    }
    values.update(overrides)
    return RateLimitState(**values)


class FlakyStrategy:
    """Stands in for the Redis strategy: fails while `down`, counts calls otherwise."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.down:
            raise StorageError(ConnectionError("redis is down"))

    async def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        self._maybe_fail()
        return True

    async def test(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        self._maybe_fail()
        return True

    async def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        self._maybe_fail()
        return WindowStats(0.0, 999)

    async def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        self._maybe_fail()


def limiter_with(strategy: FlakyStrategy, *, retry_interval: float = 60.0) -> RateLimiter:
    limiter = RateLimiter(redis_url=None, retry_interval=retry_interval)
    limiter._redis_strategy = strategy  # type: ignore[assignment]
    return limiter


class TestRateLimitHeaders:
    def test_allowed_response_has_the_three_ratelimit_headers(self) -> None:
        assert rate_limit_headers(state()) == {
            "RateLimit-Limit": "5",
            "RateLimit-Remaining": "4",
            "RateLimit-Reset": "60",
        }

    def test_refused_response_adds_retry_after(self) -> None:
        headers = rate_limit_headers(state(allowed=False, remaining=0, retry_after=17))
        assert headers["Retry-After"] == "17"

    def test_retry_after_is_at_least_one_second(self) -> None:
        headers = rate_limit_headers(state(allowed=False, remaining=0, retry_after=0))
        assert headers["Retry-After"] == "1"


class TestRateLimiterDisabled:
    async def test_disabled_limiter_allows_everything(self) -> None:
        limiter = RateLimiter(redis_url=None, enabled=False)
        for _ in range(5):
            result = await limiter.hit("2/minute", "login", "1.2.3.4")
        assert result.allowed and result.remaining == 2

    async def test_bad_rule_is_a_value_error_even_when_disabled(self) -> None:
        with pytest.raises(ValueError, match="lots"):
            await RateLimiter(redis_url=None, enabled=False).hit("lots", "a")


class TestRateLimiterFallback:
    async def test_outage_falls_back_to_memory_and_still_limits(self) -> None:
        strategy = FlakyStrategy()
        strategy.down = True
        limiter = limiter_with(strategy)
        results = [await limiter.hit("2/minute", "login", "ip") for _ in range(3)]
        assert [r.allowed for r in results] == [True, True, False]
        assert limiter.degraded

    async def test_outage_is_reported_by_health(self) -> None:
        strategy = FlakyStrategy()
        limiter = limiter_with(strategy)
        await limiter.hit("2/minute", "a")
        assert limiter.health().status == "ok"
        strategy.down = True
        await limiter.hit("2/minute", "a")
        check = limiter.health()
        assert (check.status, check.detail) == ("down", "falling back to in-process counting")
        assert check.backend == "redis"

    async def test_redis_is_not_retried_before_the_interval(self) -> None:
        strategy = FlakyStrategy()
        strategy.down = True
        limiter = limiter_with(strategy, retry_interval=60)
        await limiter.hit("5/minute", "a")
        calls = strategy.calls
        for _ in range(3):
            await limiter.hit("5/minute", "a")
        assert strategy.calls == calls

    async def test_recovers_once_redis_answers_again(self) -> None:
        strategy = FlakyStrategy()
        strategy.down = True
        limiter = limiter_with(strategy, retry_interval=0)
        await limiter.hit("5/minute", "a")
        strategy.down = False
        result = await limiter.hit("5/minute", "a")
        assert result.remaining == 999  # the answer came from the "Redis" strategy
        assert not limiter.degraded
        assert limiter.health().status == "ok"

    async def test_one_warning_per_outage(self, caplog: pytest.LogCaptureFixture) -> None:
        strategy = FlakyStrategy()
        strategy.down = True
        limiter = limiter_with(strategy, retry_interval=0)
        with caplog.at_level(logging.INFO, logger="dashtam.ratelimit"):
            for _ in range(4):
                await limiter.hit("50/minute", "a")
            strategy.down = False
            await limiter.hit("50/minute", "a")
            strategy.down = True
            await limiter.hit("50/minute", "a")
        events = [r.getMessage() for r in caplog.records]
        assert events == [
            "ratelimit.storage.unavailable",
            "ratelimit.storage.recovered",
            "ratelimit.storage.unavailable",
        ]
        assert caplog.records[0].levelno == logging.WARNING

    async def test_clear_during_outage_does_not_raise(self) -> None:
        strategy = FlakyStrategy()
        strategy.down = True
        limiter = limiter_with(strategy)
        await limiter.hit("1/minute", "a")
        await limiter.clear("1/minute", "a")
        assert (await limiter.hit("1/minute", "a")).allowed
