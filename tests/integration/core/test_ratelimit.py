"""The rate limiter on the real backends: memory by default, Redis with `TEST_REDIS_URL`."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import pytest

from dashtam.core.ratelimit import RateLimiter, rate_limit_headers
from tests.support.backends import worker_redis_url
from tests.support.tcp_proxy import TcpProxy


def key() -> str:
    """A fresh identifier, so tests never share counters (Redis outlives a test)."""
    return uuid.uuid4().hex


@asynccontextmanager
async def limiter(redis_url: str | None = None, **options: float) -> AsyncIterator[RateLimiter]:
    instance = RateLimiter(redis_url=redis_url if redis_url else worker_redis_url(), **options)
    try:
        yield instance
    finally:
        await instance.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestRateLimiter:
    async def test_reports_its_backend(self) -> None:
        async with limiter() as rl:
            assert rl.backend == ("redis" if worker_redis_url() else "memory")
            assert rl.health().status == "ok"

    async def test_allows_up_to_the_limit_then_refuses(self) -> None:
        async with limiter() as rl:
            ident = key()
            results = [await rl.hit("3/minute", "login", ident) for _ in range(4)]
        assert [r.allowed for r in results] == [True, True, True, False]
        assert [r.remaining for r in results] == [2, 1, 0, 0]
        assert all(r.limit == 3 for r in results)

    async def test_refusal_carries_retry_after_within_the_window(self) -> None:
        async with limiter() as rl:
            ident = key()
            for _ in range(2):
                await rl.hit("2/minute", "login", ident)
            refused = await rl.hit("2/minute", "login", ident)
        assert not refused.allowed
        assert 1 <= refused.retry_after <= 60
        headers = rate_limit_headers(refused)
        assert headers["Retry-After"] == str(refused.retry_after)
        assert headers["RateLimit-Remaining"] == "0"
        assert int(headers["RateLimit-Reset"]) <= 60

    async def test_identifiers_and_rules_are_counted_separately(self) -> None:
        async with limiter() as rl:
            ident = key()
            await rl.hit("1/minute", "login", ident)
            assert not (await rl.hit("1/minute", "login", ident)).allowed
            assert (await rl.hit("1/minute", "register", ident)).allowed
            assert (await rl.hit("1/minute", "login", key())).allowed
            assert (await rl.hit("2/minute", "login", ident)).allowed

    async def test_peek_does_not_consume(self) -> None:
        async with limiter() as rl:
            ident = key()
            await rl.hit("2/minute", "x", ident)
            for _ in range(3):
                peeked = await rl.peek("2/minute", "x", ident)
            assert (peeked.allowed, peeked.remaining) == (True, 1)
            await rl.hit("2/minute", "x", ident)
            peeked = await rl.peek("2/minute", "x", ident)
            assert (peeked.allowed, peeked.remaining) == (False, 0)
            assert peeked.retry_after >= 1

    async def test_clear_resets_the_count(self) -> None:
        async with limiter() as rl:
            ident = key()
            for _ in range(3):
                await rl.hit("2/minute", "x", ident)
            await rl.clear("2/minute", "x", ident)
            result = await rl.hit("2/minute", "x", ident)
        assert result.allowed and result.remaining == 1

    async def test_capacity_returns_when_the_window_moves_on(self) -> None:
        async with limiter() as rl:
            ident = key()
            await rl.hit("1/second", "x", ident)
            assert not (await rl.hit("1/second", "x", ident)).allowed
            await asyncio.sleep(1.1)
            assert (await rl.hit("1/second", "x", ident)).allowed


class TestRateLimiterRedisDown:
    async def test_closed_port_still_limits_in_memory_without_raising(self) -> None:
        async with limiter(f"redis://127.0.0.1:{closed_port()}/0") as rl:
            ident = key()
            results = [await rl.hit("2/minute", "login", ident) for _ in range(3)]
            assert [r.allowed for r in results] == [True, True, False]
            check = rl.health()
            assert check.status == "down"
            assert check.detail == "falling back to in-process counting"
            await rl.clear("2/minute", "login", ident)
            assert (await rl.peek("2/minute", "login", ident)).allowed

    async def test_recovers_when_redis_comes_back(self) -> None:
        target = worker_redis_url()
        if target is None:
            pytest.skip("needs a real Redis behind the proxy (set TEST_REDIS_URL)")
        parts = urlsplit(target)
        proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
        await proxy.start()
        url = f"redis://127.0.0.1:{proxy.port}{parts.path}"
        try:
            async with limiter(url, retry_interval=0.2) as rl:
                ident = key()
                assert (await rl.hit("5/minute", "x", ident)).remaining == 4
                await proxy.stop()
                during = await rl.hit("5/minute", "x", ident)
                assert during.allowed and during.remaining == 4  # counted in memory only
                assert rl.health().status == "down"
                await proxy.start()
                await asyncio.sleep(0.3)
                after = await rl.hit("5/minute", "x", ident)
                assert after.remaining == 3  # back on Redis, where the first hit lives
                assert rl.health().status == "ok"
        finally:
            await proxy.stop()
