"""Liveness and readiness endpoints (outside `/api/v1`)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from dashtam.api.deps import ResourcesDep
from dashtam.schemas.health import Health, Liveness
from dashtam.services.health import check_health

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "The database is down."}},
)
async def health(resources: ResourcesDep, response: Response) -> Health:
    """Report the state of the database and Redis."""
    result = await check_health(resources)
    if result.status == "unhealthy":
        response.status_code = 503
    response.headers["Cache-Control"] = "no-store"
    return result


@router.get("/health/live", response_model=Liveness)
async def live() -> Liveness:
    """Answer while the process runs."""
    return Liveness()
