"""Health-check response shapes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class CheckResult(BaseModel):
    """One dependency's state."""

    status: Literal["ok", "down"]
    latency_ms: float | None = None
    backend: str | None = None
    detail: str | None = None


class HealthChecks(BaseModel):
    """Every dependency check."""

    database: CheckResult
    redis: CheckResult
    rate_limiter: CheckResult | None = None


class Health(BaseModel):
    """`GET /health`."""

    status: Literal["healthy", "degraded", "unhealthy"]
    version: str
    checks: HealthChecks


class Liveness(BaseModel):
    """`GET /health/live`."""

    status: Literal["ok"] = "ok"
