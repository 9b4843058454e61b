"""`health_live`: the cheapest Dashtam request against a bare FastAPI app with the same answer.

It prices Dashtam's fixed per-request cost (middleware, error handlers, request context).
"""

from __future__ import annotations

from bench.scenarios.base import DashtamHttp, HttpLoad, HttpRequest, ReferenceHttp, Scenario, Target

_LIVE = HttpLoad(requests=(HttpRequest("GET", "/health/live"),))

SCENARIOS = (
    Scenario(
        name="health_live",
        description="GET /health/live vs a bare FastAPI app returning the same payload",
        subject=DashtamHttp(load=_LIVE),
        reference=ReferenceHttp(app="bench.reference.health:create_app", load=_LIVE),
        target=Target(min_rps_ratio=0.6, max_p99_ratio=4.0),
        notes="ratio = Dashtam's per-request overhead (middleware, handlers); no store is used",
    ),
)
