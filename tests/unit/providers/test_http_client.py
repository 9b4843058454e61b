"""Outbound HTTP rules: retries, backoff with full jitter, Retry-After, the request budget, logs.

These exercise `dashtam.core.http_client` (kept here, next to its only users, the providers).
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from dashtam.core.http_client import (
    ProviderHttpClient,
    RequestBudget,
    RequestBudgetExhausted,
    RetryMode,
    RetryPolicy,
    build_ssl_context,
    create_async_client,
    create_provider_http,
    parse_retry_after,
)
from dashtam.core.kv import KeyValueStore, KeyValueUnavailable, MemoryKeyValueStore
from dashtam.core.tls import ensure_certificates
from tests.conftest import make_settings
from tests.unit.providers.support import (
    FakeClock,
    ScriptedTransport,
    SleepRecorder,
    Step,
    capture,
    events,
    rendered_logs,
)

URL = "https://institution.test/v1/things"


def make_http(
    steps: list[Step],
    *,
    max_attempts: int = 4,
    rand: float = 0.5,
    retry_after_max: float = 30.0,
    budget: RequestBudget | None = None,
    total_timeout: float = 30.0,
    is_transient: object = None,
) -> tuple[ProviderHttpClient, ScriptedTransport, SleepRecorder]:
    transport = ScriptedTransport(steps)
    sleeps = SleepRecorder()
    kwargs: dict[str, object] = {}
    if is_transient is not None:
        kwargs["is_transient"] = is_transient
    http = ProviderHttpClient(
        "test",
        httpx.AsyncClient(transport=transport),
        policy=RetryPolicy(
            max_attempts=max_attempts,
            base_delay=0.5,
            max_delay=8.0,
            retry_after_max=retry_after_max,
        ),
        total_timeout=total_timeout,
        budget=budget,
        correlation_header="Schwab-Client-CorrelId",
        sleep=sleeps,
        rand=lambda: rand,
        **kwargs,  # type: ignore[arg-type]
    )
    return http, transport, sleeps


def cert_failure() -> type[httpx.TransportError]:
    """A ConnectError class whose instances carry a certificate-verification cause."""

    class _CertFailure(httpx.ConnectError):
        def __init__(self, message: str, *, request: httpx.Request) -> None:
            super().__init__(message, request=request)
            self.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")

    return _CertFailure


class TestRetryPolicy:
    def test_full_jitter_ceiling_doubles_then_caps(self) -> None:
        policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
        assert [policy.backoff(n, 1.0) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 8, 8]

    def test_full_jitter_scales_uniformly_down_to_zero(self) -> None:
        policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
        assert policy.backoff(3, 0.0) == 0.0
        assert policy.backoff(3, 0.25) == 0.5


class TestParseRetryAfter:
    def test_delta_seconds(self) -> None:
        assert parse_retry_after("7") == 7.0
        assert parse_retry_after(" 0 ") == 0.0

    def test_http_date_in_the_future(self) -> None:
        now = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)
        header = format_datetime(now + timedelta(seconds=42), usegmt=True)
        assert parse_retry_after(header, now=now) == 42.0

    def test_http_date_in_the_past_means_now(self) -> None:
        now = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)
        header = format_datetime(now - timedelta(minutes=5), usegmt=True)
        assert parse_retry_after(header, now=now) == 0.0

    @pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5"])
    def test_missing_or_garbage_is_ignored(self, value: str | None) -> None:
        assert parse_retry_after(value) is None


class TestSendRetries:
    async def test_success_is_returned_without_retry(self) -> None:
        http, transport, sleeps = make_http([200])
        response = await http.send("GET", URL)
        assert response.status_code == 200
        assert len(transport.requests) == 1
        assert sleeps.delays == []

    async def test_5xx_is_retried_with_full_jitter_backoff(self) -> None:
        http, transport, sleeps = make_http([500, 502, 503, 200], rand=0.5)
        response = await http.send("GET", URL)
        assert response.status_code == 200
        assert len(transport.requests) == 4
        # rand=0.5 of the ceilings 0.5, 1, 2.
        assert sleeps.delays == [0.25, 0.5, 1.0]

    async def test_jitter_draws_anywhere_in_the_window(self) -> None:
        http, _, sleeps = make_http([503, 503, 200], rand=0.9)
        await http.send("GET", URL)
        assert sleeps.delays == pytest.approx([0.45, 0.9])

    async def test_exhausted_5xx_returns_the_last_response(self) -> None:
        http, transport, sleeps = make_http([503, 503, 503, 504], max_attempts=4)
        response = await http.send("GET", URL)
        assert response.status_code == 504
        assert len(transport.requests) == 4
        assert len(sleeps.delays) == 3

    @pytest.mark.parametrize(
        "error",
        [
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.ReadTimeout,
            httpx.ReadError,
            httpx.RemoteProtocolError,
            httpx.PoolTimeout,
        ],
    )
    async def test_transport_errors_are_retried(self, error: type[httpx.TransportError]) -> None:
        http, transport, sleeps = make_http([error, error, 200])
        response = await http.send("GET", URL)
        assert response.status_code == 200
        assert len(transport.requests) == 3
        assert sleeps.delays == [0.25, 0.5]

    async def test_exhausted_transport_errors_raise_the_last_one(self) -> None:
        http, transport, _ = make_http([httpx.ConnectError, httpx.ReadTimeout], max_attempts=2)
        with pytest.raises(httpx.ReadTimeout):
            await http.send("GET", URL)
        assert len(transport.requests) == 2

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
    async def test_other_4xx_are_never_retried(self, status: int) -> None:
        http, transport, sleeps = make_http([status])
        response = await http.send("GET", URL)
        assert response.status_code == status
        assert len(transport.requests) == 1
        assert sleeps.delays == []

    async def test_local_protocol_errors_are_not_retried(self) -> None:
        http, transport, _ = make_http([httpx.LocalProtocolError])
        with pytest.raises(httpx.LocalProtocolError):
            await http.send("GET", URL)
        assert len(transport.requests) == 1

    async def test_certificate_failures_are_not_retried(self) -> None:
        http, transport, _ = make_http([cert_failure()])
        with pytest.raises(httpx.ConnectError):
            await http.send("GET", URL)
        assert len(transport.requests) == 1

    async def test_custom_transient_rule_retries_matching_responses(self) -> None:
        html_403 = httpx.Response(403, html="<html>Access Denied</html>")
        http, transport, _ = make_http(
            [html_403, 200],
            is_transient=lambda r: r.status_code == 403 and "html" in r.headers["content-type"],
        )
        response = await http.send("GET", URL)
        assert response.status_code == 200
        assert len(transport.requests) == 2

    async def test_form_body_is_resent_identically(self) -> None:
        http, transport, _ = make_http([503, 200])
        await http.send("POST", URL, data={"grant_type": "refresh_token", "x": "a@b"})
        bodies = [request.content for request in transport.requests]
        assert bodies[0] == bodies[1] == b"grant_type=refresh_token&x=a%40b"


class TestRetryAfter:
    async def test_429_waits_the_seconds_the_server_asked_for(self) -> None:
        http, transport, sleeps = make_http(
            [httpx.Response(429, headers={"Retry-After": "3"}), 200]
        )
        response = await http.send("GET", URL)
        assert response.status_code == 200
        assert sleeps.delays == [3.0]
        assert len(transport.requests) == 2

    async def test_503_with_http_date_is_honoured(self) -> None:
        when = datetime.now(UTC) + timedelta(seconds=20)
        header = format_datetime(when, usegmt=True)
        http, _, sleeps = make_http([httpx.Response(503, headers={"Retry-After": header}), 200])
        await http.send("GET", URL)
        assert len(sleeps.delays) == 1
        assert 17 <= sleeps.delays[0] <= 20

    async def test_429_without_header_backs_off_with_jitter(self) -> None:
        http, _, sleeps = make_http([429, 200], rand=1.0)
        await http.send("GET", URL)
        assert sleeps.delays == [0.5]

    async def test_retry_after_beyond_the_cap_ends_retries(self) -> None:
        too_long = httpx.Response(429, headers={"Retry-After": "600"})
        http, transport, sleeps = make_http([too_long, 200], retry_after_max=30.0)
        response = await http.send("GET", URL)
        assert response.status_code == 429
        assert len(transport.requests) == 1
        assert sleeps.delays == []

    async def test_429_on_the_last_attempt_is_returned(self) -> None:
        steps: list[Step] = [httpx.Response(429, headers={"Retry-After": "1"})] * 2
        http, transport, sleeps = make_http(steps, max_attempts=2)
        response = await http.send("GET", URL)
        assert response.status_code == 429
        assert len(transport.requests) == 2
        assert sleeps.delays == [1.0]


class TestUnsentOnlyMode:
    @pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
    async def test_unsent_failures_are_retried(self, error: type[httpx.TransportError]) -> None:
        http, transport, _ = make_http([error, 200])
        response = await http.send("POST", URL, retry=RetryMode.UNSENT_ONLY)
        assert response.status_code == 200
        assert len(transport.requests) == 2

    @pytest.mark.parametrize(
        "error", [httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError]
    )
    async def test_possibly_sent_failures_are_not_retried(
        self, error: type[httpx.TransportError]
    ) -> None:
        http, transport, _ = make_http([error, 200])
        with pytest.raises(error):
            await http.send("POST", URL, retry=RetryMode.UNSENT_ONLY)
        assert len(transport.requests) == 1

    @pytest.mark.parametrize("status", [500, 503, 429])
    async def test_answers_are_never_retried(self, status: int) -> None:
        http, transport, _ = make_http([status, 200])
        response = await http.send("POST", URL, retry=RetryMode.UNSENT_ONLY)
        assert response.status_code == status
        assert len(transport.requests) == 1


class TestWholeAttemptTimeout:
    def _slow(self, calls: list[int]) -> httpx.MockTransport:
        async def handler(request: httpx.Request) -> httpx.Response:
            calls.append(1)
            await asyncio.sleep(5)
            return httpx.Response(200)

        return httpx.MockTransport(handler)

    def _client(self, transport: httpx.MockTransport, sleeps: SleepRecorder) -> ProviderHttpClient:
        return ProviderHttpClient(
            "test",
            httpx.AsyncClient(transport=transport),
            policy=RetryPolicy(max_attempts=3),
            total_timeout=0.05,
            sleep=sleeps,
            rand=lambda: 0.0,
        )

    async def test_slow_reply_becomes_a_read_timeout_and_is_retried(self) -> None:
        calls: list[int] = []
        http = self._client(self._slow(calls), SleepRecorder())
        with pytest.raises(httpx.ReadTimeout):
            await http.send("GET", URL)
        assert len(calls) == 3

    async def test_slow_reply_is_not_retried_for_non_idempotent_calls(self) -> None:
        calls: list[int] = []
        http = self._client(self._slow(calls), SleepRecorder())
        with pytest.raises(httpx.ReadTimeout):
            await http.send("POST", URL, retry=RetryMode.UNSENT_ONLY)
        assert len(calls) == 1


class TestSendLogging:
    async def test_each_attempt_is_logged_without_query_headers_or_body(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        capture(caplog)
        ok = httpx.Response(200, headers={"Schwab-Client-CorrelId": "corr-123"})
        http, _, _ = make_http([503, ok])
        await http.send(
            "POST",
            URL + "?code=C0.SECRETCODE%40&state=STATE-SECRET",
            headers={"Authorization": "Bearer ACCESS-TOKEN-SECRET"},
            data={"refresh_token": "REFRESH-SECRET", "password": "PW-SECRET"},
            operation="token.refresh",
        )
        attempts = events(caplog, "provider.http.request")
        assert [a["attempt"] for a in attempts] == [1, 2]
        assert [a["status"] for a in attempts] == [503, 200]
        assert attempts[1]["correl_id"] == "corr-123"
        assert all(a["path"] == "/v1/things" and a["method"] == "POST" for a in attempts)
        assert all(isinstance(a["duration_ms"], float) for a in attempts)
        assert len(events(caplog, "provider.http.retry")) == 1
        text = rendered_logs(caplog)
        for secret in (
            "SECRETCODE",
            "STATE-SECRET",
            "ACCESS-TOKEN-SECRET",
            "REFRESH-SECRET",
            "PW-SECRET",
        ):
            assert secret not in text

    async def test_failed_attempts_log_the_error_type(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        capture(caplog)
        http, _, _ = make_http([httpx.ConnectError, 200])
        await http.send("GET", URL)
        first = events(caplog, "provider.http.request")[0]
        assert first["error_type"] == "ConnectError"
        assert first["status"] is None


class TestRequestBudget:
    def _budget(
        self,
        kv: KeyValueStore | None,
        clock: FakeClock,
        *,
        limit: int = 3,
        name: str | None = None,
        max_wait: float = 90.0,
    ) -> RequestBudget:
        return RequestBudget(
            name or f"b-{uuid.uuid4().hex[:8]}",
            limit,
            kv,
            max_wait=max_wait,
            clock=clock,
            sleep=clock.sleep,
            rand=lambda: 0.0,
        )

    async def test_under_the_limit_nothing_waits(self, kv_store: KeyValueStore) -> None:
        clock = FakeClock(60 * 1000 + 10)
        budget = self._budget(kv_store, clock, limit=3)
        assert [await budget.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
        assert clock.sleeps == []

    async def test_exhausted_minute_waits_instead_of_failing(self, kv_store: KeyValueStore) -> None:
        clock = FakeClock(60 * 1000 + 10)
        budget = self._budget(kv_store, clock, limit=3)
        for _ in range(3):
            await budget.acquire()
        waited = await budget.acquire()
        # 50 s to the next minute, then 20 s more while the previous minute's weight decays
        # (3 * 40/60 + 1 <= 3): never more than the limit in any sliding minute.
        assert clock.sleeps == pytest.approx([50.0, 20.0])
        assert waited == pytest.approx(70.0)

    async def test_denied_attempts_do_not_use_up_slots(self, kv_store: KeyValueStore) -> None:
        clock = FakeClock(60 * 1000 + 10)
        name = f"b-{uuid.uuid4().hex[:8]}"
        budget = self._budget(kv_store, clock, limit=2, name=name)
        await budget.acquire()
        await budget.acquire()
        await budget.acquire()
        assert await kv_store.get(f"provider-budget:{name}:1000") == b"2"
        assert await kv_store.get(f"provider-budget:{name}:1001") == b"1"

    async def test_the_budget_is_shared_between_processes(self, kv_store: KeyValueStore) -> None:
        clock = FakeClock(60 * 2000 + 30)
        name = f"b-{uuid.uuid4().hex[:8]}"
        first = self._budget(kv_store, clock, limit=3, name=name)
        second = self._budget(kv_store, clock, limit=3, name=name)
        await first.acquire()
        await first.acquire()
        await second.acquire()
        await second.acquire()
        assert clock.sleeps == [pytest.approx(30.0), pytest.approx(20.0)]

    async def test_wait_longer_than_the_bound_raises(self, kv_store: KeyValueStore) -> None:
        clock = FakeClock(60 * 3000 + 5)
        budget = self._budget(kv_store, clock, limit=1, max_wait=30.0)
        await budget.acquire()
        with pytest.raises(RequestBudgetExhausted) as caught:
            await budget.acquire()
        assert caught.value.retry_after == pytest.approx(55.0)
        assert clock.sleeps == []

    async def test_unreachable_store_falls_back_to_this_process(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        capture(caplog)

        class DownStore(MemoryKeyValueStore):
            async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
                raise KeyValueUnavailable("connection refused")

        clock = FakeClock(60 * 4000)
        budget = self._budget(DownStore(), clock, limit=2)
        assert await budget.acquire() == 0.0
        assert budget.shared is False
        await budget.acquire()
        # Still limited (locally): the third request waits for the next minute.
        await budget.acquire()
        assert clock.sleeps[0] == pytest.approx(60.0)
        assert events(caplog, "provider.budget.degraded")

    async def test_shared_store_is_tried_again_after_an_outage(self) -> None:
        calls: list[str] = []

        class FlakyStore(MemoryKeyValueStore):
            def __init__(self) -> None:
                super().__init__()
                self.down = True

            async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
                calls.append(key)
                if self.down:
                    raise KeyValueUnavailable("down")
                return await super().incr(key, amount, ttl)

        store = FlakyStore()
        clock = FakeClock(60 * 5000)
        budget = self._budget(store, clock, limit=100)
        await budget.acquire()
        await budget.acquire()
        assert len(calls) == 1  # degraded: the store is not hammered while down
        store.down = False
        clock.now += 31
        await budget.acquire()
        assert budget.shared is True
        assert len(calls) == 2

    async def test_send_takes_a_slot_per_attempt(self, kv_store: KeyValueStore) -> None:
        clock = FakeClock(60 * 6000 + 1)
        budget = self._budget(kv_store, clock, limit=2)
        http, transport, _ = make_http([503, 200, 200], budget=budget)
        await http.send("GET", URL)
        assert clock.sleeps == []
        await http.send("GET", URL)
        assert len(transport.requests) == 3
        assert clock.sleeps and clock.sleeps[0] == pytest.approx(59.0)

    async def test_unbudgeted_calls_take_no_slot(self, kv_store: KeyValueStore) -> None:
        clock = FakeClock(60 * 8000 + 1)
        budget = self._budget(kv_store, clock, limit=1, max_wait=0.0)
        http, transport, _ = make_http([200, 200, 200], budget=budget)
        await http.send("POST", URL, budgeted=False)
        await http.send("POST", URL, budgeted=False)
        await http.send("GET", URL)
        assert len(transport.requests) == 3

    async def test_exhausted_budget_propagates_from_send(self, kv_store: KeyValueStore) -> None:
        clock = FakeClock(60 * 7000 + 1)
        budget = self._budget(kv_store, clock, limit=1, max_wait=0.0)
        http, transport, _ = make_http([200], budget=budget)
        await http.send("GET", URL)
        with pytest.raises(RequestBudgetExhausted):
            await http.send("GET", URL)
        assert len(transport.requests) == 1


class TestClientFactory:
    def test_timeouts_and_redirect_policy_come_from_settings(self, tmp_root: Path) -> None:
        settings = make_settings(tmp_root, provider_connect_timeout=2.5, provider_timeout=12.0)
        client = create_async_client(settings)
        assert client.timeout.connect == 2.5
        assert client.timeout.read == 12.0
        assert client.follow_redirects is False
        assert client.headers["User-Agent"].startswith("Dashtam/")

    def test_provider_http_uses_configured_attempts_and_budget(self, tmp_root: Path) -> None:
        settings = make_settings(tmp_root, provider_max_attempts=6, provider_retry_after_max=12.0)
        http = create_provider_http("x", settings, None, requests_per_minute=120)
        assert http.policy.max_attempts == 6
        assert http.policy.retry_after_max == 12.0
        assert http.budget is not None and http.budget.limit == 120
        assert http.total_timeout == settings.provider_timeout

    def test_extra_ca_is_trusted_alongside_the_system_store(self, tmp_root: Path) -> None:
        paths, _ = ensure_certificates(tmp_root / "http-client-certs")
        baseline = build_ssl_context(None).cert_store_stats()["x509_ca"]
        context = build_ssl_context(paths.ca_cert)
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname is True
        assert context.cert_store_stats()["x509_ca"] == baseline + 1


def test_httpcore_detects_the_event_loop_without_a_failed_import() -> None:
    # httpcore runs `import sniffio` in every lock and event it creates; when the package is
    # missing, each of those imports searches sys.path and fails (~36 µs, several per request).
    import importlib.util

    assert importlib.util.find_spec("sniffio") is not None
