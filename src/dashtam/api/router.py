"""The `/api/v1` router: every domain router is mounted here."""

from __future__ import annotations

from fastapi import APIRouter

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


def build_api_router() -> APIRouter:
    """Assemble the versioned API from the domain routers."""
    router = APIRouter(prefix=API_PREFIX)
    router.include_router(auth.router)
    router.include_router(password_resets.router)
    router.include_router(provider_types.router)
    router.include_router(providers.router)
    router.include_router(provider_authorization.router)
    router.include_router(accounts.router)
    router.include_router(positions.router)
    router.include_router(transactions.router)
    router.include_router(portfolio.router)
    router.include_router(syncs.router)
    return router
