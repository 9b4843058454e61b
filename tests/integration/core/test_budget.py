"""The per-user request budget on the real backends: leases from Redis with `TEST_REDIS_URL`,
else the limiter's in-process counters; and the fallback when Redis is unreachable."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis import asyncio as aioredis

from dashtam.core.budget import RequestBudget
from dashtam.core.ratelimit import RateLimiter
from tests.support.backends import worker_redis_url


@asynccontextmanager
async def budget_over(
    redis_url: str | None, *, max_lease: int = 100
) -> AsyncIterator[tuple[RequestBudget, RateLimiter]]:
    client = aioredis.Redis.from_url(redis_url, socket_timeout=0.5) if redis_url else None
    limiter = RateLimiter(
        redis_url=redis_url, strategy="sliding-window-counter", socket_timeout=0.5, pool_timeout=0.5
    )
    try:
        yield RequestBudget(limiter, client, max_lease=max_lease), limiter
    finally:
        await limiter.aclose()
        if client is not None:
            await client.aclose()


def fresh() -> str:
    return uuid.uuid4().hex


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestRequestBudget:
    async def test_counts_each_user_up_to_the_limit_then_refuses(self) -> None:
        async with budget_over(worker_redis_url()) as (budget, _):
            user = fresh()
            states = [await budget.hit("3/minute", user) for _ in range(4)]
            other = await budget.hit("3/minute", fresh())

        assert [s.allowed for s in states] == [True, True, True, False]
        assert [s.remaining for s in states] == [2, 1, 0, 0]
        assert states[-1].retry_after >= 1
        assert all(s.limit == 3 and 0 < s.reset_after <= 60 for s in states)
        assert other.allowed and other.remaining == 2

    async def test_replicas_share_one_budget_and_never_over_admit(self) -> None:
        redis_url = worker_redis_url()
        if redis_url is None:
            pytest.skip("replicas share counts through Redis (set TEST_REDIS_URL)")
        user = fresh()
        async with budget_over(redis_url) as (first, _), budget_over(redis_url) as (second, _):
            # Leases grow while a replica is busy; whatever they hold, the total stays exact.
            admitted = 0
            for n in range(600):
                state = await (first if n % 3 else second).hit("500/minute", user)
                admitted += state.allowed
            refused = await first.hit("500/minute", user)

        assert 490 <= admitted <= 500
        assert not refused.allowed

    async def test_busy_users_cost_fewer_round_trips(self, monkeypatch: pytest.MonkeyPatch) -> None:
        redis_url = worker_redis_url()
        if redis_url is None:
            pytest.skip("leases are taken from Redis (set TEST_REDIS_URL)")
        async with budget_over(redis_url, max_lease=8) as (budget, _):
            user = fresh()
            calls = 0
            original = budget._lease

            async def counted(*args: Any) -> Any:
                nonlocal calls
                calls += 1
                return await original(*args)

            monkeypatch.setattr(budget, "_lease", counted)
            states = [await budget.hit("1000/minute", user) for _ in range(100)]

        assert all(s.allowed for s in states)
        # Leases of 1, 2, 4, then 8: 100 hits in 4 + ceil(85 / 8) = 15 round trips.
        assert calls == 15
        assert states[-1].remaining == 900

    async def test_redis_down_falls_back_to_memory_and_reports_degraded(self) -> None:
        async with budget_over(f"redis://127.0.0.1:{closed_port()}/0") as (budget, limiter):
            user = fresh()
            states = [await budget.hit("2/minute", user) for _ in range(3)]

            assert [s.allowed for s in states] == [True, True, False]
            assert limiter.health().status == "down"
