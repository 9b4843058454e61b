"""Key/value store with TTLs and locks, behind one small interface.

`MemoryKeyValueStore` serves the embedded default (one process); `RedisKeyValueStore` serves
production (many replicas). Both pass the same contract tests. Connection problems surface as
`KeyValueUnavailable` so callers can degrade instead of failing with a 500.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Protocol, runtime_checkable

from redis import asyncio as aioredis
from redis.exceptions import LockError, RedisError


class KeyValueUnavailable(RuntimeError):
    """The backing store cannot be reached."""


class LockNotAcquired(RuntimeError):
    """A lock was held by someone else for longer than we were willing to wait."""


@runtime_checkable
class KeyValueStore(Protocol):
    """The operations Dashtam needs from a cache: all keys are strings, values bytes."""

    backend: str

    async def get(self, key: str) -> bytes | None:
        """Return the value, or None when absent or expired."""

    async def set(self, key: str, value: bytes | str, ttl: float | None = None) -> None:
        """Store a value, optionally expiring after `ttl` seconds."""

    async def set_if_absent(self, key: str, value: bytes | str, ttl: float | None = None) -> bool:
        """Store only if the key does not exist; True when stored."""

    async def pop(self, key: str) -> bytes | None:
        """Atomically read and delete (single-use values)."""

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomically add `amount`; `ttl` applies when the key is created."""

    async def ttl(self, key: str) -> float | None:
        """Seconds until the key expires; None when absent or without expiry."""

    async def delete(self, *keys: str) -> int:
        """Delete keys; returns how many existed."""

    def lock(
        self, name: str, *, timeout: float, blocking_timeout: float | None = None
    ) -> AsyncLockContext:
        """A mutual-exclusion lock that expires after `timeout` seconds if never released."""

    async def ping(self) -> None:
        """Raise `KeyValueUnavailable` if the store is unreachable."""

    async def close(self) -> None:
        """Release connections."""


class AsyncLockContext(Protocol):
    """`async with store.lock(...)`; raises `LockNotAcquired` when it cannot be had in time."""

    async def __aenter__(self) -> None: ...

    async def __aexit__(self, *exc: object) -> None: ...


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


class MemoryKeyValueStore:
    """In-process store for the embedded default. Not shared between processes."""

    backend = "memory"

    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, float | None]] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._lock_changed = asyncio.Condition()

    def _live(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= time.monotonic():
            del self._data[key]
            return None
        return value

    @staticmethod
    def _deadline(ttl: float | None) -> float | None:
        return None if ttl is None else time.monotonic() + ttl

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def set(self, key: str, value: bytes | str, ttl: float | None = None) -> None:
        self._data[key] = (_as_bytes(value), self._deadline(ttl))

    async def set_if_absent(self, key: str, value: bytes | str, ttl: float | None = None) -> bool:
        if self._live(key) is not None:
            return False
        self._data[key] = (_as_bytes(value), self._deadline(ttl))
        return True

    async def pop(self, key: str) -> bytes | None:
        value = self._live(key)
        self._data.pop(key, None)
        return value

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        current = self._live(key)
        if current is None:
            new = amount
            deadline = self._deadline(ttl)
        else:
            new = int(current) + amount
            deadline = self._data[key][1]
        self._data[key] = (str(new).encode(), deadline)
        return new

    async def ttl(self, key: str) -> float | None:
        if self._live(key) is None:
            return None
        expires = self._data[key][1]
        return None if expires is None else max(0.0, expires - time.monotonic())

    async def delete(self, *keys: str) -> int:
        removed = 0
        for key in keys:
            if self._live(key) is not None:
                removed += 1
            self._data.pop(key, None)
        return removed

    def lock(
        self, name: str, *, timeout: float, blocking_timeout: float | None = None
    ) -> AsyncLockContext:
        return _MemoryLock(self, name, timeout, blocking_timeout)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._data.clear()


class _MemoryLock:
    def __init__(
        self, store: MemoryKeyValueStore, name: str, timeout: float, wait: float | None
    ) -> None:
        self._store = store
        self._name = name
        self._timeout = timeout
        self._wait = wait
        self._token = uuid.uuid4().hex

    def _try_take(self) -> bool:
        holder = self._store._locks.get(self._name)
        now = time.monotonic()
        if holder is None or holder[1] <= now:
            self._store._locks[self._name] = (self._token, now + self._timeout)
            return True
        return False

    async def __aenter__(self) -> None:
        cond = self._store._lock_changed
        deadline = None if self._wait is None else time.monotonic() + self._wait
        async with cond:
            while not self._try_take():
                holder_expiry = self._store._locks[self._name][1]
                remaining = holder_expiry - time.monotonic()
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise LockNotAcquired(self._name)
                    remaining = min(remaining, left)
                try:
                    await asyncio.wait_for(cond.wait(), timeout=max(remaining, 0.001))
                except TimeoutError:
                    continue

    async def __aexit__(self, *exc: object) -> None:
        cond = self._store._lock_changed
        async with cond:
            holder = self._store._locks.get(self._name)
            if holder is not None and holder[0] == self._token:
                del self._store._locks[self._name]
            cond.notify_all()


class RedisKeyValueStore:
    """Redis-backed store shared by every replica and worker."""

    backend = "redis"

    def __init__(self, client: aioredis.Redis, *, prefix: str = "dashtam:") -> None:
        self._client = client
        self._prefix = prefix

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        max_connections: int = 50,
        pool_timeout: float = 2.0,
        socket_timeout: float = 1.0,
    ) -> RedisKeyValueStore:
        """Build a store over a blocking pool (redis-py raises past `max_connections` otherwise)."""
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=30,
        )
        return cls(aioredis.Redis(connection_pool=pool))

    @property
    def client(self) -> aioredis.Redis:
        """The underlying client (for libraries that need it, e.g. rate limiting)."""
        return self._client

    def _k(self, key: str) -> str:
        return self._prefix + key

    def full_key(self, key: str) -> str:
        """The Redis key that holds `key` (for scripts that touch it directly)."""
        return self._prefix + key

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._client.get(self._k(key))
        except (RedisError, OSError) as exc:
            raise KeyValueUnavailable(str(exc)) from exc
        return _optional_bytes(value)

    async def set(self, key: str, value: bytes | str, ttl: float | None = None) -> None:
        try:
            await self._client.set(self._k(key), _as_bytes(value), px=_ms(ttl))
        except (RedisError, OSError) as exc:
            raise KeyValueUnavailable(str(exc)) from exc

    async def set_if_absent(self, key: str, value: bytes | str, ttl: float | None = None) -> bool:
        try:
            stored = await self._client.set(self._k(key), _as_bytes(value), px=_ms(ttl), nx=True)
        except (RedisError, OSError) as exc:
            raise KeyValueUnavailable(str(exc)) from exc
        return bool(stored)

    async def pop(self, key: str) -> bytes | None:
        try:
            value = await self._client.getdel(self._k(key))
        except (RedisError, OSError) as exc:
            raise KeyValueUnavailable(str(exc)) from exc
        return _optional_bytes(value)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        full = self._k(key)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.incrby(full, amount)
                if ttl is not None:
                    # NX: only the first increment sets the window; later ones keep it.
                    pipe.pexpire(full, _ms(ttl) or 1, nx=True)
                results = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise KeyValueUnavailable(str(exc)) from exc
        return int(results[0])

    async def ttl(self, key: str) -> float | None:
        try:
            ms = await self._client.pttl(self._k(key))
        except (RedisError, OSError) as exc:
            raise KeyValueUnavailable(str(exc)) from exc
        return None if ms is None or ms < 0 else ms / 1000

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        try:
            return int(await self._client.delete(*(self._k(k) for k in keys)))
        except (RedisError, OSError) as exc:
            raise KeyValueUnavailable(str(exc)) from exc

    def lock(
        self, name: str, *, timeout: float, blocking_timeout: float | None = None
    ) -> AsyncLockContext:
        return _RedisLock(self, name, timeout, blocking_timeout)

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise KeyValueUnavailable(str(exc)) from exc

    async def close(self) -> None:
        await self._client.aclose()


class _RedisLock:
    def __init__(
        self, store: RedisKeyValueStore, name: str, timeout: float, wait: float | None
    ) -> None:
        self._lock = store.client.lock(
            store._k("lock:" + name),
            timeout=timeout,
            blocking=True,
            blocking_timeout=wait,
            sleep=0.02,
        )
        self._name = name

    async def __aenter__(self) -> None:
        try:
            acquired = await self._lock.acquire()
        except (RedisError, OSError) as exc:
            raise KeyValueUnavailable(str(exc)) from exc
        if not acquired:
            raise LockNotAcquired(self._name)

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._lock.release()
        except LockError:
            # Our lease expired and someone else may hold it now: nothing of ours to release.
            pass
        except (RedisError, OSError) as error:
            raise KeyValueUnavailable(str(error)) from error


def _optional_bytes(value: object) -> bytes | None:
    if value is None:
        return None
    return value if isinstance(value, bytes) else str(value).encode()


def _ms(ttl: float | None) -> int | None:
    return None if ttl is None else max(1, int(ttl * 1000))


def create_kv_store(
    redis_url: str | None,
    *,
    max_connections: int = 50,
    pool_timeout: float = 2.0,
    socket_timeout: float = 1.0,
) -> KeyValueStore:
    """Redis when a URL is configured, otherwise the in-process store."""
    if redis_url:
        return RedisKeyValueStore.from_url(
            redis_url,
            max_connections=max_connections,
            pool_timeout=pool_timeout,
            socket_timeout=socket_timeout,
        )
    return MemoryKeyValueStore()
