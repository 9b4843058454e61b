"""One contract, two implementations: the in-process store and Redis behave the same.

The `store` fixture is parametrised: `memory` always, `redis` when `TEST_REDIS_URL` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dashtam.core.kv import (
    KeyValueStore,
    KeyValueUnavailable,
    LockNotAcquired,
    MemoryKeyValueStore,
    RedisKeyValueStore,
)
from tests.support.backends import worker_redis_url

_BACKENDS = ["memory", "redis"] if worker_redis_url() else ["memory"]


@pytest.fixture(params=_BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[KeyValueStore]:
    if request.param == "memory":
        yield MemoryKeyValueStore()
        return
    redis_store = RedisKeyValueStore.from_url(worker_redis_url() or "", max_connections=20)
    await redis_store.client.flushdb()
    yield redis_store
    await redis_store.client.flushdb()
    await redis_store.close()


async def _sleep_past(seconds: float) -> None:
    await asyncio.sleep(seconds + 0.05)


class TestGetSet:
    async def test_round_trip_bytes_and_text(self, store: KeyValueStore) -> None:
        await store.set("a", "text")
        await store.set("b", b"\x00bytes")
        assert await store.get("a") == b"text"
        assert await store.get("b") == b"\x00bytes"
        assert await store.get("missing") is None

    async def test_ttl_expires_values(self, store: KeyValueStore) -> None:
        await store.set("k", "v", ttl=0.2)
        remaining = await store.ttl("k")
        assert remaining is not None and 0 < remaining <= 0.2
        await _sleep_past(0.2)
        assert await store.get("k") is None
        assert await store.ttl("k") is None

    async def test_set_if_absent_only_first_wins(self, store: KeyValueStore) -> None:
        results = await asyncio.gather(*(store.set_if_absent("once", str(i)) for i in range(10)))
        assert results.count(True) == 1
        assert await store.set_if_absent("once", "again") is False

    async def test_pop_is_single_use(self, store: KeyValueStore) -> None:
        await store.set("state", "x")
        results = await asyncio.gather(*(store.pop("state") for _ in range(10)))
        assert [r for r in results if r is not None] == [b"x"]

    async def test_delete_counts_existing_keys(self, store: KeyValueStore) -> None:
        await store.set("d1", "1")
        await store.set("d2", "2")
        assert await store.delete("d1", "d2", "d3") == 2
        assert await store.get("d1") is None


class TestIncr:
    async def test_concurrent_increments_are_atomic(self, store: KeyValueStore) -> None:
        await asyncio.gather(*(store.incr("counter") for _ in range(50)))
        assert await store.get("counter") == b"50"

    async def test_ttl_is_set_on_creation_and_not_extended(self, store: KeyValueStore) -> None:
        assert await store.incr("window", ttl=0.3) == 1
        await asyncio.sleep(0.15)
        assert await store.incr("window", ttl=0.3) == 2
        remaining = await store.ttl("window")
        assert remaining is not None and remaining < 0.2
        await _sleep_past(0.2)
        assert await store.incr("window", ttl=0.3) == 1


class TestLock:
    async def test_lock_serialises_critical_sections(self, store: KeyValueStore) -> None:
        inside = 0
        peak = 0

        async def critical() -> None:
            nonlocal inside, peak
            async with store.lock("res", timeout=5, blocking_timeout=5):
                inside += 1
                peak = max(peak, inside)
                await asyncio.sleep(0.01)
                inside -= 1

        await asyncio.gather(*(critical() for _ in range(10)))
        assert peak == 1

    async def test_lock_times_out_when_held(self, store: KeyValueStore) -> None:
        async with store.lock("busy", timeout=5):
            with pytest.raises(LockNotAcquired):
                async with store.lock("busy", timeout=5, blocking_timeout=0.1):
                    pass

    async def test_abandoned_lock_expires(self, store: KeyValueStore) -> None:
        holder = store.lock("lease", timeout=0.2)
        await holder.__aenter__()  # never released: a crashed holder
        async with store.lock("lease", timeout=1, blocking_timeout=2):
            pass


class TestUnavailable:
    async def test_unreachable_redis_raises_typed_error_quickly(self) -> None:
        dead = RedisKeyValueStore.from_url(
            "redis://127.0.0.1:1/0", socket_timeout=0.3, pool_timeout=0.3
        )
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(KeyValueUnavailable):
                await dead.get("x")
            with pytest.raises(KeyValueUnavailable):
                await dead.ping()
            assert loop.time() - started < 3
        finally:
            await dead.close()
