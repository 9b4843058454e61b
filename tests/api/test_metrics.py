"""`GET /metrics`: every series after real traffic, access control, and bounded labels."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine
from taskiq import InMemoryBroker

from dashtam.core.kv import KeyValueStore
from dashtam.core.state import AppResources
from dashtam.jobs.tasks import JobQueue
from dashtam.main import assemble_resources, create_app
from tests.conftest import make_settings
from tests.integration.connections.harness import API, rig

TOKEN = "metrics-token-for-tests-0123456789abcdef"
LOCAL = ("127.0.0.1", 40000)
REMOTE = ("203.0.113.10", 50000)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def http(samples: Samples, name: str, method: str, route: str, status_class: str) -> float | None:
    return value(samples, name, method=method, route=route, status_class=status_class)


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {key: item for key, item in body.items() if key != "request_id"}


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def client_for(app: FastAPI, peer: tuple[str, int]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=peer)
    return httpx.AsyncClient(transport=transport, base_url="https://test")


@asynccontextmanager
async def app_with(
    tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore, **overrides: object
) -> AsyncIterator[FastAPI]:
    """The real application over the test stores, with some settings changed."""
    settings = make_settings(tmp_root, **overrides).ensure_secrets()
    resources = assemble_resources(settings, engine, kv_store)
    app = create_app(settings, resources=resources)
    try:
        async with app.router.lifespan_context(app):
            yield app
    finally:
        await resources.close_services()


class TestExposition:
    async def test_every_series_after_traffic(
        self, resources: AppResources, tmp_root: Path
    ) -> None:
        async with rig(resources, tmp_root, rate_limit_login="1/minute") as r:
            app = r.api_transport.app
            assert isinstance(app, FastAPI)
            # Jobs on this loop, as in the embedded API: connecting queues a first sync.
            queue = JobQueue.create(r.resources, InMemoryBroker())
            await queue.broker.startup()
            try:
                who = await r.login()
                provider_id = await r.connect(who)  # code exchange upstream, a sync job
                await queue.wait_idle()
                refreshed = await r.api.patch(
                    f"{API}/providers/{provider_id}/authorization", headers=who.headers
                )
                assert refreshed.status_code == 200, refreshed.text
            finally:
                await queue.broker.shutdown()
            assert (await r.api.get("/health")).status_code == 200
            assert (await r.api.get(f"/nope/{uuid.uuid4()}")).status_code == 404
            login = {"email": "nobody@example.com", "password": "wrong-password-123"}
            assert (await r.api.post(f"{API}/auth/login", json=login)).status_code == 401
            assert (await r.api.post(f"{API}/auth/login", json=login)).status_code == 429

            async with client_for(app, LOCAL) as local:
                scraped = await local.get("/metrics")
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain; version=")
        assert scraped.headers["cache-control"] == "no-store"
        samples = parse(scraped.text)

        # HTTP: by route template, method and status class; latency; in flight.
        requests = "dashtam_http_requests_total"
        assert http(samples, requests, "GET", "/health", "2xx") == 1
        assert http(samples, requests, "GET", "<unmatched>", "4xx") == 1
        assert http(samples, requests, "POST", "/api/v1/auth/login", "4xx") == 2
        refresh_route = "/api/v1/providers/{provider_id}/authorization"
        timed = "dashtam_http_request_duration_seconds_count"
        assert http(samples, timed, "PATCH", refresh_route, "2xx") == 1
        assert "dashtam_http_request_duration_seconds_bucket" in names(samples)
        assert value(samples, "dashtam_http_requests_in_flight") == 1  # the scrape itself
        # The database pool, read at scrape time.
        for reading in ("size", "checked_out", "checked_in", "overflow"):
            assert f"dashtam_db_pool_{reading}" in names(samples)
        # Jobs, the sync they ran, upstream calls, the token refresh, the rate limit.
        assert (
            value(samples, "dashtam_jobs_total", task="dashtam.sync.run", outcome="ok") or 0
        ) >= 1
        assert "dashtam_job_duration_seconds_bucket" in names(samples)
        runs = sum(v for (n, _), v in samples.items() if n == "dashtam_sync_runs_total")
        assert runs >= 1
        assert value(samples, "dashtam_sync_rows_total", change="added") is not None
        ok_calls = [
            v
            for (n, labels), v in samples.items()
            if n == "dashtam_provider_requests_total"
            and ("provider", "schwab") in labels
            and ("outcome", "ok") in labels
        ]
        assert sum(ok_calls) >= 2  # at least the code exchange and the refresh
        assert "dashtam_provider_request_duration_seconds_bucket" in names(samples)
        assert value(samples, "dashtam_token_refreshes_total", provider="schwab", outcome="ok") == 1
        assert value(samples, "dashtam_rate_limit_rejections_total", rule="login") == 1

        # Bounded labels: no id, no raw path, no email anywhere in the exposition.
        assert provider_id not in scraped.text
        assert str(who.user.id) not in scraped.text
        assert who.user.email not in scraped.text
        assert who.tokens.access_token not in scraped.text
        assert "/nope" not in scraped.text
        assert "example.com" not in scraped.text
        templates = set(app.openapi()["paths"]) | {"/metrics"}
        route_labels = {dict(labels)["route"] for (_, labels) in samples if "route" in dict(labels)}
        assert route_labels <= templates | {"<unmatched>"}
        uuid_like = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
        assert not uuid_like.search(scraped.text)

    async def test_registries_are_per_app(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with (
            app_with(tmp_root, engine, kv_store) as first,
            app_with(tmp_root, engine, kv_store) as second,
            client_for(first, LOCAL) as one,
            client_for(second, LOCAL) as two,
        ):
            for _ in range(3):
                await one.get("/health/live")
            first_text = (await one.get("/metrics")).text
            second_text = (await two.get("/metrics")).text
        live = {"method": "GET", "route": "/health/live", "status_class": "2xx"}
        assert value(parse(first_text), "dashtam_http_requests_total", **live) == 3
        assert value(parse(second_text), "dashtam_http_requests_total", **live) is None


class TestAccess:
    async def test_loopback_may_scrape_by_default(self, app: FastAPI) -> None:
        async with client_for(app, LOCAL) as local:
            response = await local.get("/metrics")
        assert response.status_code == 200
        assert "dashtam_http_requests_total" in response.text

    async def test_others_get_the_unknown_path_answer(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        denied = await client.get("/metrics")
        unknown = await client.get("/no-such-path")
        assert denied.status_code == unknown.status_code == 404
        assert denied.headers["content-type"] == "application/problem+json"
        assert without_request_id(denied.json()) == without_request_id(unknown.json())

    async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
        assert response.status_code == 404

    async def test_forwarded_for_from_a_trusted_proxy_names_the_client(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with (
            app_with(tmp_root, engine, kv_store, trusted_proxies="203.0.113.10") as app,
            client_for(app, REMOTE) as via_proxy,
        ):
            allowed = await via_proxy.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
            denied = await via_proxy.get("/metrics", headers={"X-Forwarded-For": "198.51.100.7"})
        assert allowed.status_code == 200
        assert denied.status_code == 404

    async def test_token_is_required_when_set(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with (
            app_with(tmp_root, engine, kv_store, metrics_bearer_token=TOKEN) as app,
            client_for(app, LOCAL) as local,
            client_for(app, REMOTE) as remote,
        ):
            good = {"Authorization": f"Bearer {TOKEN}"}
            assert (await local.get("/metrics")).status_code == 404
            wrong = {"Authorization": "Bearer not-the-token"}
            assert (await local.get("/metrics", headers=wrong)).status_code == 404
            assert (await local.get("/metrics", headers=good)).status_code == 200
            # The address rule still applies while METRICS_ALLOWED_IPS is set.
            assert (await remote.get("/metrics", headers=good)).status_code == 404

    async def test_token_alone_when_no_addresses_are_listed(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with (
            app_with(
                tmp_root, engine, kv_store, metrics_bearer_token=TOKEN, metrics_allowed_ips=""
            ) as app,
            client_for(app, REMOTE) as remote,
        ):
            good = {"Authorization": f"Bearer {TOKEN}"}
            assert (await remote.get("/metrics", headers=good)).status_code == 200
            assert (await remote.get("/metrics")).status_code == 404

    async def test_disabled_metrics_are_not_served(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with (
            app_with(tmp_root, engine, kv_store, metrics_enabled=False) as app,
            client_for(app, LOCAL) as local,
        ):
            response = await local.get("/metrics")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"

    async def test_not_in_the_openapi_document(self, client: httpx.AsyncClient) -> None:
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert "/metrics" not in paths


@pytest.mark.parametrize("method", ["BREW", "PROPFIND"])
async def test_unknown_methods_share_one_label(app: FastAPI, method: str) -> None:
    async with client_for(app, LOCAL) as local:
        await local.request(method, "/health/live")
        samples = parse((await local.get("/metrics")).text)
    assert not any(("method", method) in labels for _, labels in samples)
    assert any(("method", "OTHER") in labels for _, labels in samples)
