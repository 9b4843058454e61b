"""Bare FastAPI app answering `GET /health/live` with Dashtam's payload, `{"status":"ok"}`.

It keeps a Pydantic response model like Dashtam's route does, so the ratio measures what
Dashtam adds around the route (middleware, error handling), not serialization differences.
"""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel


class Liveness(BaseModel):
    """Same shape as `dashtam.schemas.health.Liveness`."""

    status: Literal["ok"] = "ok"


def create_app() -> FastAPI:
    """Build the reference app (no middleware, no docs, one route)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health/live", response_model=Liveness)
    async def live() -> Liveness:
        return Liveness()

    return app
