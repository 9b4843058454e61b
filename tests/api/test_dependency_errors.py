"""A dependency failing mid-request answers 503 problem+json with Retry-After, never a 500."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError

from dashtam.core.kv import KeyValueUnavailable


def _raiser(error: Exception):  # type: ignore[no-untyped-def]
    async def endpoint() -> None:
        raise error

    return endpoint


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("SELECT 1", {}, Exception("database is locked")),
        KeyValueUnavailable("connection refused"),
        ConnectionRefusedError("refused"),
    ],
    ids=["database", "kv", "socket"],
)
async def test_dependency_failure_is_a_503_problem(app: FastAPI, error: Exception) -> None:
    app.add_api_route("/__test/boom", _raiser(error))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://test") as client:
        response = await client.get("/__test/boom")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "2"
    body = response.json()
    assert body["code"] == "service_unavailable"
    assert "locked" not in body["detail"]


async def test_unexpected_error_is_a_generic_500_with_request_id(app: FastAPI) -> None:
    app.add_api_route("/__test/bug", _raiser(ValueError("secret internals")))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://test") as client:
        response = await client.get("/__test/bug")
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "internal_error"
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert body["request_id"] == response.headers["x-request-id"]
