"""The metrics helpers: label hygiene, the active-instance rules, and every recording function."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from dashtam.core.config import Settings
from dashtam.core.database import create_engine
from dashtam.core.observability import metrics
from dashtam.core.observability.metrics import Metrics


@pytest.fixture
def fresh() -> Iterator[Metrics]:
    """A new `Metrics` bound to the test's context (undone afterwards)."""
    instance = Metrics()
    token = metrics.bind(instance)
    yield instance
    metrics.reset(token)


def sample_names(instance: Metrics) -> set[str]:
    return {
        sample.name
        for family in text_string_to_metric_families(instance.render().decode())
        for sample in family.samples
    }


class TestLabel:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("ok", "ok"),
            ("Reauth_Required", "reauth_required"),
            ("dashtam.sync.run", "dashtam.sync.run"),
            ("provider-authorization:user", "provider-authorization:user"),
            (None, "unknown"),
            ("", "unknown"),
        ],
    )
    def test_keeps_short_words(self, raw: str | None, expected: str) -> None:
        assert metrics.label(raw) == expected

    @pytest.mark.parametrize(
        "raw",
        [
            "3f2b8c1e-9d4a-4c2e-8f00-1234567890ab",  # a UUID
            "user:1234567",  # digits
            "deadbeefcafe",  # a hex run
            "Bearer abc.def",  # spaces: free text
            "x" * 80,  # too long
            "/api/v1/accounts/42",  # a raw path
        ],
    )
    def test_squashes_ids_paths_and_free_text(self, raw: str) -> None:
        assert metrics.label(raw) == "other"


class TestClassifiers:
    @pytest.mark.parametrize(
        ("status", "expected"),
        [(200, "2xx"), (204, "2xx"), (404, "4xx"), (503, "5xx"), (42, "other")],
    )
    def test_status_class(self, status: int, expected: str) -> None:
        assert metrics.status_class(status) == expected

    def test_unknown_methods_collapse(self) -> None:
        assert metrics.http_method("get") == "GET"
        assert metrics.http_method("BREW") == "OTHER"
        assert metrics.http_method(None) == "OTHER"

    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            (200, "ok"),
            (302, "ok"),
            (401, "unauthorized"),
            (404, "client_error"),
            (429, "rate_limited"),
            (502, "server_error"),
        ],
    )
    def test_provider_status_outcome(self, status: int, expected: str) -> None:
        assert metrics.provider_status_outcome(status) == expected

    def test_provider_error_outcome(self) -> None:
        request = httpx.Request("GET", "https://example.test/")
        assert metrics.provider_error_outcome(httpx.ReadTimeout("t", request=request)) == "timeout"
        assert (
            metrics.provider_error_outcome(httpx.ConnectError("c", request=request))
            == "connect_error"
        )
        assert (
            metrics.provider_error_outcome(httpx.RemoteProtocolError("r", request=request))
            == "network_error"
        )
        assert metrics.provider_error_outcome(RuntimeError("x")) == "error"


class TestRecording:
    def test_every_module_function_lands_in_the_bound_instance(self, fresh: Metrics) -> None:
        metrics.token_refresh("ok", provider="schwab")
        metrics.token_refresh("reauth_required", provider="schwab")
        metrics.sync_finished("succeeded", 3, 1, 2, 4.5)
        metrics.sync_finished("failed", 0, 0, 0)
        metrics.job_started("dashtam.sync.run")
        metrics.job_finished("dashtam.sync.run", "ok", 0.2)
        metrics.rate_limited("login")
        metrics.provider_call("schwab", "retry", 0.1, operation="accounts.list")
        metrics.provider_call("schwab", "ok", 0.3, operation="accounts.list")

        value = fresh.value
        assert value("dashtam_token_refreshes_total", {"provider": "schwab", "outcome": "ok"}) == 1
        assert (
            value(
                "dashtam_token_refreshes_total",
                {"provider": "schwab", "outcome": "reauth_required"},
            )
            == 1
        )
        assert value("dashtam_sync_runs_total", {"status": "succeeded"}) == 1
        assert value("dashtam_sync_runs_total", {"status": "failed"}) == 1
        assert value("dashtam_sync_rows_total", {"change": "added"}) == 3
        assert value("dashtam_sync_rows_total", {"change": "modified"}) == 1
        assert value("dashtam_sync_rows_total", {"change": "removed"}) == 2
        # A failed run without a known duration is counted but not timed.
        assert value("dashtam_sync_duration_seconds_count", {"status": "succeeded"}) == 1
        assert value("dashtam_sync_duration_seconds_count", {"status": "failed"}) is None
        job = {"task": "dashtam.sync.run", "outcome": "ok"}
        assert value("dashtam_jobs_total", job) == 1
        assert value("dashtam_job_duration_seconds_sum", job) == pytest.approx(0.2)
        assert value("dashtam_jobs_in_progress", {"task": "dashtam.sync.run"}) == 0
        assert value("dashtam_rate_limit_rejections_total", {"rule": "login"}) == 1
        call = {"provider": "schwab", "operation": "accounts.list"}
        assert value("dashtam_provider_requests_total", {**call, "outcome": "retry"}) == 1
        assert value("dashtam_provider_requests_total", {**call, "outcome": "ok"}) == 1
        assert (
            value(
                "dashtam_provider_request_duration_seconds_count",
                {"provider": "schwab", "outcome": "ok"},
            )
            == 1
        )

    def test_http_requests_are_counted_by_template_method_and_class(self, fresh: Metrics) -> None:
        fresh.http_request("get", "/api/v1/accounts/{account_id}", 200, 0.01)
        fresh.http_request("BREW", "<unmatched>", 404, 0.001)
        assert (
            fresh.value(
                "dashtam_http_requests_total",
                {"method": "GET", "route": "/api/v1/accounts/{account_id}", "status_class": "2xx"},
            )
            == 1
        )
        assert (
            fresh.value(
                "dashtam_http_requests_total",
                {"method": "OTHER", "route": "<unmatched>", "status_class": "4xx"},
            )
            == 1
        )

    def test_registries_are_private(self) -> None:
        first, second = Metrics(), Metrics()
        first.rate_limited("login")
        assert first.value("dashtam_rate_limit_rejections_total", {"rule": "login"}) == 1
        assert second.value("dashtam_rate_limit_rejections_total", {"rule": "login"}) is None

    def test_render_is_prometheus_text(self, fresh: Metrics) -> None:
        fresh.rate_limited("user")
        names = sample_names(fresh)
        assert "dashtam_rate_limit_rejections_total" in names
        assert "dashtam_http_requests_in_flight" in names
        # The fixed change values exist from the first scrape.
        assert "dashtam_sync_rows_total" in names


@pytest.fixture
def _keep_default() -> Iterator[None]:
    """Restore the process default after a test that activates its own."""
    saved = metrics._default
    yield
    metrics._default = saved


@pytest.mark.usefixtures("_keep_default")
class TestActiveInstance:
    def test_bound_instance_wins_over_the_default(self) -> None:
        default, bound = Metrics(), Metrics()
        metrics.activate(default)
        token = metrics.bind(bound)
        try:
            metrics.rate_limited("login")
        finally:
            metrics.reset(token)
        metrics.rate_limited("register")
        assert bound.value("dashtam_rate_limit_rejections_total", {"rule": "login"}) == 1
        assert default.value("dashtam_rate_limit_rejections_total", {"rule": "login"}) is None
        assert default.value("dashtam_rate_limit_rejections_total", {"rule": "register"}) == 1

    async def test_a_task_inherits_the_binding_of_its_creator(self, fresh: Metrics) -> None:
        # An embedded job kicked while serving a request records into that app's registry.
        await asyncio.create_task(_record_in_task())
        assert fresh.value("dashtam_rate_limit_rejections_total", {"rule": "from_task"}) == 1

    def test_current_creates_a_default_when_none_is_active(self) -> None:
        metrics._default = None
        created = metrics.current()
        assert isinstance(created, Metrics)
        assert metrics.current() is created


async def _record_in_task() -> None:
    metrics.rate_limited("from_task")


class TestPoolCollector:
    async def test_reads_the_pool_at_scrape_time(self, tmp_path: Path) -> None:
        settings = Settings(environment="test", var_dir=tmp_path)
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}", settings)
        instance = Metrics()
        assert instance.value("dashtam_db_pool_size") is None  # no engine bound yet
        instance.bind_engine(engine)
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                assert instance.value("dashtam_db_pool_checked_out") == 1
            assert instance.value("dashtam_db_pool_checked_out") == 0
            assert instance.value("dashtam_db_pool_checked_in") == 1
            assert instance.value("dashtam_db_pool_size") == engine.sync_engine.pool.size()  # type: ignore[attr-defined]
            # QueuePool counts overflow from -size: reported as "none beyond the pool".
            assert instance.value("dashtam_db_pool_overflow") == 0
        finally:
            await engine.dispose()

    async def test_postgres_style_pool_sizes(self, tmp_path: Path) -> None:
        settings = Settings(environment="test", db_pool_size=3, db_max_overflow=2)
        # No connection is made: the readings come from the pool's bookkeeping alone.
        engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none", settings)
        instance = Metrics()
        instance.bind_engine(engine)
        try:
            assert instance.value("dashtam_db_pool_size") == 3
            assert instance.value("dashtam_db_pool_max_overflow") == 2
            assert instance.value("dashtam_db_pool_checked_out") == 0
        finally:
            await engine.dispose()
