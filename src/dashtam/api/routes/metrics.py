"""`GET /metrics`: the application's Prometheus metrics (outside `/api/v1`, not in OpenAPI)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from dashtam.api.deps import ResourcesDep
from dashtam.core.net import client_ip
from dashtam.core.observability.http import MetricsAccess
from dashtam.core.observability.metrics import CONTENT_TYPE_LATEST, METRICS_KEY, Metrics

#: Where the parsed access rule is cached in `resources.extras`.
ACCESS_KEY = "metrics_access"

router = APIRouter(tags=["observability"], include_in_schema=False)


@router.get("/metrics")
async def metrics(request: Request, resources: ResourcesDep) -> Response:
    """Prometheus text exposition of this process's metrics."""
    settings = resources.settings
    access: MetricsAccess | None = resources.extras.get(ACCESS_KEY)
    if access is None:
        access = MetricsAccess.from_settings(settings)
        resources.extras[ACCESS_KEY] = access
    peer = request.client.host if request.client else None
    forwarded = ",".join(request.headers.getlist("x-forwarded-for")) or None
    caller = client_ip(peer, forwarded, settings.trusted_proxies)
    registry: Metrics | None = resources.extras.get(METRICS_KEY)
    if registry is None or not access.allows(caller, request.headers.get("authorization")):
        # The very answer an unknown path gets: a denied caller learns nothing, not even
        # that the endpoint exists.
        raise StarletteHTTPException(status_code=404)
    # Rendering is synchronous but cheap (a few hundred series, well under a millisecond of
    # CPU per scrape): a hop to a thread would cost more than it saves.
    return Response(
        registry.render(),
        media_type=CONTENT_TYPE_LATEST,
        headers={"Cache-Control": "no-store"},
    )
