"""The HTTP conventions every endpoint shares: problem+json errors, request ids, headers."""

from __future__ import annotations

import httpx


class TestHealth:
    async def test_health_reports_each_dependency(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "healthy"
        assert body["checks"]["database"]["status"] == "ok"
        assert body["checks"]["database"]["latency_ms"] >= 0
        assert body["checks"]["redis"]["status"] == "ok"

    async def test_liveness(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/live")
        assert response.json() == {"status": "ok"}


class TestProblems:
    async def test_unknown_path_is_a_404_problem(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/does-not-exist")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["code"] == "not_found"
        assert body["status"] == 404
        assert body["request_id"] == response.headers["x-request-id"]

    async def test_wrong_method_is_a_405_with_allow(self, client: httpx.AsyncClient) -> None:
        response = await client.delete("/health")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET"
        assert response.json()["code"] == "method_not_allowed"

    async def test_body_over_limit_is_413(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/health", content=b"x" * (70 * 1024))
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"

    async def test_foreign_host_is_rejected(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/live", headers={"host": "evil.example"})
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_host"


class TestRequestId:
    async def test_valid_incoming_id_is_echoed(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/live", headers={"X-Request-ID": "abc-12345678"})
        assert response.headers["x-request-id"] == "abc-12345678"

    async def test_malformed_incoming_id_is_replaced(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/live", headers={"X-Request-ID": "bad id\n"})
        assert response.headers["x-request-id"] != "bad id\n"
        assert len(response.headers["x-request-id"]) == 32

    async def test_security_headers_present(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/live")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "max-age" in response.headers["strict-transport-security"]
