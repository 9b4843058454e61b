"""The `/api/v1` routes: every domain router, included straight into the app."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from dashtam.api.routes import (
    accounts,
    auth,
    password_resets,
    portfolio,
    positions,
    provider_authorization,
    provider_types,
    providers,
    syncs,
    transactions,
)

API_PREFIX = "/api/v1"

#: In matching order: the most requested first (a request is matched against each router in
#: turn). Authentication (`/auth/me`, `/auth/refresh`) and the data reads lead.
DOMAIN_ROUTERS: tuple[APIRouter, ...] = (
    auth.router,
    transactions.router,
    accounts.router,
    positions.router,
    portfolio.router,
    providers.router,
    provider_authorization.router,
    syncs.router,
    provider_types.router,
    password_resets.router,
)


def include_api_routes(app: FastAPI) -> None:
    """Mount every domain router under `/api/v1`.

    Each is included into the app directly, not through an intermediate `/api/v1` router:
    FastAPI walks every level of nested routers on every request (route-change checks and
    matching), so one level less is measurably cheaper on the hottest endpoints.
    """
    for router in DOMAIN_ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
