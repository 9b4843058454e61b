"""The `/api/v1` router: every domain router is mounted here."""

from __future__ import annotations

from fastapi import APIRouter

API_PREFIX = "/api/v1"


def build_api_router() -> APIRouter:
    """Assemble the versioned API from the domain routers."""
    router = APIRouter(prefix=API_PREFIX)
    return router
