"""Dependency checks behind `/health`: each bounded by a timeout so a dead store never hangs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import text

from dashtam import __version__
from dashtam.core.state import AppResources
from dashtam.schemas.health import CheckResult, Health, HealthChecks


async def _timed(
    check: Callable[[], Awaitable[object]], limit_seconds: float, backend: str
) -> CheckResult:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit_seconds):
            await check()
    except TimeoutError:
        return CheckResult(status="down", backend=backend, detail="timed out")
    except Exception as exc:  # any failure means "down"; the type is enough detail
        return CheckResult(status="down", backend=backend, detail=type(exc).__name__)
    latency = round((time.perf_counter() - started) * 1000, 2)
    return CheckResult(status="ok", latency_ms=latency, backend=backend)


async def check_health(resources: AppResources) -> Health:
    """Check the database and the KV store concurrently and summarise.

    Returns:
        `unhealthy` when the database is down, `degraded` when only Redis (or the rate
        limiter's shared storage) is, `healthy` otherwise.
    """
    settings = resources.settings

    async def ping_db() -> None:
        async with resources.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    db_backend = "sqlite" if settings.uses_sqlite else "postgresql"
    database, redis = await asyncio.gather(
        _timed(ping_db, settings.health_timeout, db_backend),
        _timed(resources.kv.ping, settings.health_timeout, resources.kv.backend),
    )
    checks = HealthChecks(database=database, redis=redis)
    limiter_check = resources.extras.get("rate_limiter_health")
    if limiter_check is not None:
        checks.rate_limiter = limiter_check()
    if database.status == "down":
        status = "unhealthy"
    elif redis.status == "down" or (checks.rate_limiter and checks.rate_limiter.status == "down"):
        status = "degraded"
    else:
        status = "healthy"
    return Health(status=status, version=__version__, checks=checks)
