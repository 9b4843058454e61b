"""Outbound HTTP to institutions: one shared client per provider, bounded retries, a request budget.

Every call to an institution goes through `ProviderHttpClient.send`, which

* takes a slot from the provider's `RequestBudget` (shared across processes through the KV
  store; it waits for the next slot instead of failing, up to a bound);
* bounds each attempt by a connect timeout and a whole-attempt timeout;
* retries connection errors, timeouts, 5xx and 429 with exponential backoff and *full* jitter,
  honouring `Retry-After` (seconds or an HTTP date) up to a cap; other 4xx are never retried;
* logs one structured event per attempt (method, path without query, status, duration,
  attempt, the institution's correlation id), never headers, bodies or query strings.

Non-idempotent calls (an OAuth code exchange: the code is single-use) pass
`RetryMode.UNSENT_ONLY`: they are retried only when the request provably never left this
process (connect error, connect timeout, no pooled connection free). A read timeout or a 5xx
may mean the institution already consumed the code, and a blind retry would then fail with
`invalid_grant` and hide the real outcome.

This module knows nothing about any provider's error format: it returns the last response (or
raises the last `httpx` exception) and the provider client classifies it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx

from dashtam import __version__
from dashtam.core.config import Settings
from dashtam.core.kv import KeyValueStore, KeyValueUnavailable
from dashtam.core.logging import log_event
from dashtam.core.observability import metrics

logger = logging.getLogger("dashtam.http")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
Rand = Callable[[], float]
#: Decides whether a non-2xx response is worth another attempt (idempotent calls only).
TransientCheck = Callable[[httpx.Response], bool]

USER_AGENT = f"Dashtam/{__version__}"

#: Errors raised before a single byte of the request reached the server.
_UNSENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
#: Transport errors that may clear up on their own. Local protocol errors, unsupported
#: schemes and proxy misconfiguration are bugs or configuration: retrying cannot help.
_TRANSIENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


class RetryMode(StrEnum):
    """How much retrying a call tolerates."""

    #: Idempotent (reads, Schwab's non-rotating refresh): any transient failure is retried.
    ALL = "all"
    #: Non-idempotent (code exchange): only failures that prove the request was never sent.
    UNSENT_ONLY = "unsent_only"


class RequestBudgetExhausted(RuntimeError):
    """The provider's request budget had no slot within the allowed wait."""

    def __init__(self, provider: str, retry_after: float) -> None:
        self.provider = provider
        self.retry_after = retry_after
        super().__init__(f"request budget for {provider} exhausted; retry in {retry_after:.1f}s")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter.

    Attributes:
        max_attempts: Total attempts including the first.
        base_delay: Backoff ceiling for the first retry; doubles per retry.
        max_delay: Largest backoff ceiling.
        retry_after_max: Longest server-requested wait we honour; a longer `Retry-After`
            ends the retries so the caller can surface it instead of blocking.
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    retry_after_max: float = 30.0

    def backoff(self, retry_number: int, rand: float) -> float:
        """Full-jitter delay before retry `retry_number` (1-based): uniform in [0, ceiling).

        Full jitter (rather than a fixed exponential delay) spreads the retries of many
        clients that failed at the same moment, so they do not hit the institution in waves.
        """
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry_number - 1))
        return rand * ceiling


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date).

    Args:
        value: The header value, if any.
        now: The current time (tests); defaults to the wall clock.

    Returns:
        A non-negative number of seconds, or None when absent or unparseable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


class RequestBudget:
    """A per-provider request budget (e.g. 120/min) shared by every process through the KV store.

    Counting uses a sliding-window approximation over two fixed one-minute counters
    (`incr` on a per-minute key with a TTL): the previous minute's count is weighted by how
    much of it still overlaps the last 60 s. Plain fixed windows would let 2x the limit
    through around a minute boundary, which an institution enforcing a rolling minute answers
    with 429s. When the budget is spent, `acquire` sleeps until a slot frees up (bounded by
    `max_wait`). If the KV store is unreachable, counting falls back to this process alone
    (logged), and the shared store is tried again after `kv_retry_after` seconds.
    """

    def __init__(
        self,
        name: str,
        limit: int,
        kv: KeyValueStore | None,
        *,
        window: float = 60.0,
        max_wait: float = 90.0,
        jitter: float = 0.25,
        kv_retry_after: float = 30.0,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        rand: Rand = random.random,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.name = name
        self.limit = limit
        self.window = window
        self.max_wait = max_wait
        self._kv = kv
        self._jitter = jitter
        self._kv_retry_after = kv_retry_after
        self._kv_down_until = 0.0
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._local: dict[int, int] = {}

    def _key(self, index: int) -> str:
        return f"provider-budget:{self.name}:{index}"

    @property
    def shared(self) -> bool:
        """Whether counts currently go to the shared KV store (False while degraded)."""
        return self._kv is not None and self._clock() >= self._kv_down_until

    async def acquire(self) -> float:
        """Take one request slot, waiting for one if necessary.

        Returns:
            Seconds spent waiting (0 when a slot was free).

        Raises:
            RequestBudgetExhausted: No slot would free up within `max_wait`.
        """
        waited = 0.0
        while True:
            now = self._clock()
            index = math.floor(now / self.window)
            elapsed = now - index * self.window
            wait = await self._try_take(index, elapsed)
            if wait <= 0:
                return waited
            wait += self._rand() * self._jitter
            if waited + wait > self.max_wait:
                raise RequestBudgetExhausted(self.name, wait)
            log_event(
                logger,
                "provider.budget.wait",
                provider=self.name,
                wait_s=round(wait, 3),
                limit=self.limit,
            )
            await self._sleep(wait)
            waited += wait

    async def _try_take(self, index: int, elapsed: float) -> float:
        """Count this request; 0 when allowed, else seconds until a slot should be free."""
        previous, current = await self._count(index)
        weight = 1.0 - elapsed / self.window
        if previous * weight + current <= self.limit:
            return 0.0
        await self._give_back(index)
        if current > self.limit:
            # This minute alone is full: nothing frees up before the next one starts.
            return self.window - elapsed
        # Wait until the previous minute's weight has decayed enough for one more request.
        needed_weight = (self.limit - current) / previous
        return max(0.01, self.window * (1.0 - needed_weight) - elapsed)

    async def _count(self, index: int) -> tuple[int, int]:
        if self.shared:
            assert self._kv is not None
            try:
                current = await self._kv.incr(self._key(index), 1, ttl=2 * self.window + 5)
                raw = await self._kv.get(self._key(index - 1))
                return (int(raw) if raw else 0), current
            except KeyValueUnavailable:
                self._kv_down_until = self._clock() + self._kv_retry_after
                log_event(
                    logger,
                    "provider.budget.degraded",
                    logging.WARNING,
                    provider=self.name,
                    reason="kv_unavailable",
                )
        for stale in [k for k in self._local if k < index - 1]:
            del self._local[stale]
        self._local[index] = self._local.get(index, 0) + 1
        return self._local.get(index - 1, 0), self._local[index]

    async def _give_back(self, index: int) -> None:
        if self.shared:
            assert self._kv is not None
            try:
                await self._kv.incr(self._key(index), -1)
                return
            except KeyValueUnavailable:
                self._kv_down_until = self._clock() + self._kv_retry_after
        if self._local.get(index, 0) > 0:
            self._local[index] -= 1


def is_certificate_error(exc: BaseException) -> bool:
    """A failed certificate check is configuration, not a transient fault."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def default_is_transient(response: httpx.Response) -> bool:
    """5xx and 429 are worth another attempt; every other status is final."""
    return response.status_code >= 500 or response.status_code == 429


class ProviderHttpClient:
    """One provider's shared `httpx.AsyncClient` plus the retry and budget rules around it."""

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        policy: RetryPolicy | None = None,
        total_timeout: float = 30.0,
        budget: RequestBudget | None = None,
        correlation_header: str | None = None,
        is_transient: TransientCheck = default_is_transient,
        sleep: Sleep = asyncio.sleep,
        rand: Rand = random.random,
    ) -> None:
        self.name = name
        self.client = client
        self.policy = policy or RetryPolicy()
        self.total_timeout = total_timeout
        self.budget = budget
        self._correlation_header = correlation_header
        self._is_transient = is_transient
        self._sleep = sleep
        self._rand = rand

    async def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        retry: RetryMode = RetryMode.ALL,
        operation: str | None = None,
        budgeted: bool = True,
    ) -> httpx.Response:
        """Send one logical request, retrying transient failures within the policy.

        Args:
            method: HTTP method.
            url: Absolute URL (or relative to the client's base URL).
            params: Query parameters.
            headers: Extra request headers (never logged).
            data: A form body (never logged).
            auth: Per-request auth, e.g. HTTP Basic client credentials (never logged).
            retry: `RetryMode.UNSENT_ONLY` for calls that must not be repeated once sent.
            operation: A short name for logs (`token.exchange`, `accounts.list`).
            budgeted: Take a slot from the request budget for each attempt. OAuth token calls
                opt out: a code expires in seconds and must not queue behind a bulk sync.

        Returns:
            The final response: a success, a non-retryable status, or the last transient one
            once attempts (or the `Retry-After` cap) ran out. Callers classify it.

        Raises:
            httpx.TransportError: The last connection error or timeout, after retries.
            RequestBudgetExhausted: The request budget had no slot within its wait bound.
        """
        attempt = 0
        while True:
            attempt += 1
            request = self.client.build_request(
                method, url, params=params, headers=headers, data=data
            )
            if budgeted and self.budget is not None:
                await self.budget.acquire()
            started = time.perf_counter()
            try:
                response = await self._attempt(request, auth)
            except httpx.TransportError as exc:
                self._log_attempt(request, attempt, started, operation, error=exc)
                if not self._should_retry_error(exc, retry, attempt):
                    self._record(started, operation, metrics.provider_error_outcome(exc))
                    raise
                self._record(started, operation, "retry")
                delay = self.policy.backoff(attempt, self._rand())
                self._log_retry(request, attempt, delay, type(exc).__name__, operation)
                await self._sleep(delay)
                continue
            self._log_attempt(request, attempt, started, operation, response=response)
            delay_or_none = self._retry_delay(response, retry, attempt)
            if delay_or_none is None:
                outcome = metrics.provider_status_outcome(response.status_code)
                self._record(started, operation, outcome)
                return response
            self._record(started, operation, "retry")
            self._log_retry(request, attempt, delay_or_none, str(response.status_code), operation)
            await self._sleep(delay_or_none)

    async def _attempt(self, request: httpx.Request, auth: httpx.Auth | None) -> httpx.Response:
        try:
            # httpx's timeouts are per phase (a slow drip of bytes never trips the read
            # timeout); this bounds the whole attempt, body included.
            async with asyncio.timeout(self.total_timeout):
                return await self.client.send(request, auth=auth)
        except TimeoutError as exc:
            # The request may have reached the server: report it as a read timeout so that
            # non-idempotent callers do not retry it.
            raise httpx.ReadTimeout(
                f"no complete response within {self.total_timeout}s", request=request
            ) from exc

    def _should_retry_error(self, exc: httpx.TransportError, mode: RetryMode, attempt: int) -> bool:
        if attempt >= self.policy.max_attempts or is_certificate_error(exc):
            return False
        if mode is RetryMode.UNSENT_ONLY:
            return isinstance(exc, _UNSENT_ERRORS)
        return isinstance(exc, _TRANSIENT_ERRORS)

    def _retry_delay(self, response: httpx.Response, mode: RetryMode, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None to return this response."""
        if response.is_success or mode is RetryMode.UNSENT_ONLY:
            return None
        if attempt >= self.policy.max_attempts or not self._is_transient(response):
            return None
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is not None:
            if retry_after > self.policy.retry_after_max:
                # The institution asked for a longer pause than we will block a caller for.
                return None
            return retry_after
        return self.policy.backoff(attempt, self._rand())

    def _record(self, started: float, operation: str | None, outcome: str) -> None:
        """One attempt's metrics: `ok`, `retry` (another attempt follows) or an error class."""
        elapsed = time.perf_counter() - started
        metrics.provider_call(self.name, outcome, elapsed, operation=operation)

    def _correlation_id(self, response: httpx.Response | None) -> str | None:
        if response is None or self._correlation_header is None:
            return None
        value = response.headers.get(self._correlation_header)
        return str(value) if value is not None else None

    def _log_attempt(
        self,
        request: httpx.Request,
        attempt: int,
        started: float,
        operation: str | None,
        *,
        response: httpx.Response | None = None,
        error: BaseException | None = None,
    ) -> None:
        status = response.status_code if response is not None else None
        fields: dict[str, Any] = {
            "provider": self.name,
            "operation": operation,
            "method": request.method,
            # The path only: query strings can carry codes and states.
            "path": request.url.path,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "attempt": attempt,
            "correl_id": self._correlation_id(response),
        }
        if error is not None:
            fields["error_type"] = type(error).__name__
        failed = error is not None or (status is not None and status >= 400)
        log_event(
            logger,
            "provider.http.request",
            logging.WARNING if failed else logging.INFO,
            **fields,
        )

    def _log_retry(
        self,
        request: httpx.Request,
        attempt: int,
        delay: float,
        reason: str,
        operation: str | None,
    ) -> None:
        log_event(
            logger,
            "provider.http.retry",
            logging.WARNING,
            provider=self.name,
            operation=operation,
            method=request.method,
            path=request.url.path,
            attempt=attempt,
            delay_s=round(delay, 3),
            reason=reason,
        )

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self.client.aclose()


def build_ssl_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """A verifying client context over the system trust store, plus `ca_file` when given.

    The extra CA is *added* rather than used alone, so pointing `PROVIDER_CA_FILE` at the
    local CA for the simulator does not break calls to the real institution.
    """
    context = ssl.create_default_context()
    paths = ssl.get_default_verify_paths()
    has_system_store = any(p and Path(p).exists() for p in (paths.cafile, paths.capath))
    if not has_system_store:
        # Minimal containers may ship without an OS bundle; certifi comes with httpx.
        import certifi

        context.load_verify_locations(cafile=certifi.where())
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def create_async_client(
    settings: Settings,
    *,
    base_url: str = "",
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The shared `httpx.AsyncClient` for one provider.

    Args:
        settings: Timeouts and the optional extra CA.
        base_url: Prefix for relative URLs.
        transport: A replacement transport (tests: `MockTransport`, the simulator's ASGI app).

    Returns:
        A client with TLS verification on and redirects off (an institution redirecting an
        API call is unexpected, and following it could send a bearer token elsewhere).
    """
    timeout = httpx.Timeout(settings.provider_timeout, connect=settings.provider_connect_timeout)
    verify: ssl.SSLContext | bool = (
        True if transport is not None else build_ssl_context(settings.provider_ca_file)
    )
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=timeout,
        verify=verify,
        transport=transport,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
    )


def create_provider_http(
    name: str,
    settings: Settings,
    kv: KeyValueStore | None,
    *,
    requests_per_minute: int | None,
    correlation_header: str | None = None,
    is_transient: TransientCheck = default_is_transient,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep = asyncio.sleep,
    rand: Rand = random.random,
) -> ProviderHttpClient:
    """Build a provider's `ProviderHttpClient` from settings.

    Args:
        name: Provider key (logs, budget keys).
        settings: Timeouts, attempts, CA, caps.
        kv: Shared store for the request budget (None: per-process only).
        requests_per_minute: The provider's budget; None for no budget.
        correlation_header: Response header naming the institution's call id (logged).
        is_transient: Which non-2xx responses to retry.
        transport: Replacement transport (tests, simulator).
        sleep: Injected for tests.
        rand: Injected for tests.

    Returns:
        The client; close it with `aclose()`.
    """
    budget = (
        RequestBudget(
            name,
            requests_per_minute,
            kv,
            max_wait=settings.provider_budget_max_wait,
            sleep=sleep,
            rand=rand,
        )
        if requests_per_minute
        else None
    )
    return ProviderHttpClient(
        name,
        create_async_client(settings, transport=transport),
        policy=RetryPolicy(
            max_attempts=settings.provider_max_attempts,
            retry_after_max=settings.provider_retry_after_max,
        ),
        total_timeout=settings.provider_timeout,
        budget=budget,
        correlation_header=correlation_header,
        is_transient=is_transient,
        sleep=sleep,
        rand=rand,
    )
