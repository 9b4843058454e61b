"""The admission gate on the real backends: one Redis script with `TEST_REDIS_URL`, else the
in-process KV store and limiter; and its fallback when Redis is unreachable."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from dashtam.core.admission import AdmissionGate
from dashtam.core.kv import KeyValueStore, MemoryKeyValueStore, RedisKeyValueStore
from dashtam.core.ratelimit import RateLimiter
from tests.support.backends import worker_redis_url


@asynccontextmanager
async def gate_over(
    redis_url: str | None,
) -> AsyncIterator[tuple[AdmissionGate, KeyValueStore, RateLimiter]]:
    kv: KeyValueStore = (
        RedisKeyValueStore.from_url(redis_url, socket_timeout=0.5)
        if redis_url
        else MemoryKeyValueStore()
    )
    limiter = RateLimiter(
        redis_url=redis_url, strategy="sliding-window-counter", socket_timeout=0.5, pool_timeout=0.5
    )
    try:
        yield AdmissionGate(kv, limiter), kv, limiter
    finally:
        await limiter.aclose()
        await kv.close()


def fresh() -> str:
    return uuid.uuid4().hex


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestAdmissionGate:
    async def test_returns_the_cached_session_state_with_the_budget(self) -> None:
        async with gate_over(worker_redis_url()) as (gate, kv, _):
            key = f"test:session:{fresh()}"
            missing = await gate.admit(state_key=key, rule="5/minute", user=fresh())
            await kv.set(key, b"owner-id", ttl=60)
            found = await gate.admit(state_key=key, rule="5/minute", user=fresh())

        assert (missing.cached_state, missing.cache_readable) == (None, True)
        assert (found.cached_state, found.cache_readable) == (b"owner-id", True)

    async def test_counts_each_user_up_to_the_limit_then_refuses(self) -> None:
        async with gate_over(worker_redis_url()) as (gate, _, _):
            user, key = fresh(), f"test:session:{fresh()}"
            budgets = [
                (await gate.admit(state_key=key, rule="3/minute", user=user)).budget
                for _ in range(4)
            ]
            other = (await gate.admit(state_key=key, rule="3/minute", user=fresh())).budget

        assert [b.allowed for b in budgets] == [True, True, True, False]
        assert [b.remaining for b in budgets] == [2, 1, 0, 0]
        assert budgets[-1].retry_after >= 1
        assert all(b.limit == 3 for b in budgets)
        assert other.allowed and other.remaining == 2

    async def test_refused_hits_are_not_counted(self) -> None:
        redis_url = worker_redis_url()
        if redis_url is None:
            pytest.skip("the script's own counters (set TEST_REDIS_URL)")
        async with gate_over(redis_url) as (gate, _, _):
            user, key = fresh(), f"test:session:{fresh()}"
            for _ in range(5):
                await gate.admit(state_key=key, rule="2/minute", user=user)
            wider = (await gate.admit(state_key=key, rule="3/minute", user=user)).budget

        # Same counters under a wider rule: only the two admitted hits were counted.
        assert wider.allowed and wider.remaining == 0

    async def test_redis_down_falls_back_to_memory_and_reports_degraded(self) -> None:
        async with gate_over(f"redis://127.0.0.1:{closed_port()}/0") as (gate, _, limiter):
            user, key = fresh(), f"test:session:{fresh()}"
            admissions = [
                await gate.admit(state_key=key, rule="2/minute", user=user) for _ in range(3)
            ]

            assert [a.budget.allowed for a in admissions] == [True, True, False]
            assert all(a.cached_state is None and not a.cache_readable for a in admissions)
            assert limiter.health().status == "down"
