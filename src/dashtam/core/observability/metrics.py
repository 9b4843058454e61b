"""Prometheus metrics: one registry per application, recorded through small module functions.

Every application (`create_app`) owns a `Metrics` object with its own `CollectorRegistry`, never
prometheus-client's global default, so tests and several apps in one process never collide.
Code that has no handle on the application records through the module functions
(`token_refresh`, `sync_finished`, `job_finished`, `rate_limited`, `provider_call`); they write
to the *active* `Metrics`:

1. the one bound to the current context (the HTTP middleware binds its app's for the duration
   of each request, so a job kicked from a request inherits it), else
2. the process default, set by `activate()` when an application starts (a `dashtam worker`
   process or a lone script gets a lazily created one).

Labels are bounded by construction: route templates (never raw paths), status classes,
normalised methods, and outcome words chosen by the calling code. `label()` additionally
squashes anything that does not look like a short identifier, so a mistake cannot explode the
number of series or leak a secret into a label.

Multi-process: each process (each uvicorn `--workers` child, each `dashtam worker`) has its own
registry; scrape every process (one container per process is the recommended layout). See
`docs/development/architecture/observability.md`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from dashtam.core.state import AppResources

__all__ = [
    "CONTENT_TYPE_LATEST",
    "Metrics",
    "activate",
    "bind",
    "current",
    "for_resources",
    "http_method",
    "install",
    "job_finished",
    "job_started",
    "label",
    "provider_call",
    "provider_error_outcome",
    "provider_status_outcome",
    "rate_limited",
    "reset",
    "status_class",
    "sync_finished",
    "token_refresh",
]

NAMESPACE = "dashtam"
#: Request latency: an API answer is usually milliseconds; provider-backed routes take seconds.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: One upstream attempt: bounded by PROVIDER_TIMEOUT (30 s by default).
PROVIDER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Jobs and syncs: a first sync of a large account can take minutes.
JOB_BUCKETS = (0.05, 0.25, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

#: Methods kept as labels; anything else (clients may send any token) becomes `OTHER`.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: What a label value may look like: short lower-case words, dots, colons, dashes.
_LABEL = re.compile(r"^[a-z][a-z0-9_.:-]{0,47}$")
#: Anything shaped like an id (hex runs, UUIDs, digits) is refused even if it matches `_LABEL`.
_ID_LIKE = re.compile(r"[0-9a-f]{8,}|\d{4,}")
OTHER = "other"


def label(value: str | None, *, default: str = "unknown") -> str:
    """A safe label value: `value` lower-cased when it is a short word, else `other`.

    Callers pass constants (`"ok"`, `"reauth_required"`); this is the guard against a caller
    that passes something unbounded by mistake (an id, an error message).
    """
    if value is None or value == "":
        return default
    text = str(value).lower()
    if not _LABEL.match(text) or _ID_LIKE.search(text):
        return OTHER
    return text


def status_class(status: int) -> str:
    """`2xx`, `4xx` … for an HTTP status (bounded, unlike the status itself)."""
    return f"{status // 100}xx" if 100 <= status <= 599 else OTHER


def http_method(method: str | None) -> str:
    """The method, or `OTHER` for anything outside the standard set."""
    upper = (method or "").upper()
    return upper if upper in _METHODS else "OTHER"


def provider_status_outcome(status: int) -> str:
    """The outcome of a final upstream response: `ok` or an error class."""
    if status < 400:
        return "ok"
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "unauthorized"
    if status < 500:
        return "client_error"
    return "server_error"


def provider_error_outcome(exc: BaseException) -> str:
    """The error class of a failed upstream attempt (a transport error)."""
    import httpx

    from dashtam.core.http_client import is_certificate_error

    if is_certificate_error(exc):
        return "certificate_error"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect_error"
    if isinstance(exc, httpx.TransportError):
        return "network_error"
    return "error"


class _PoolCollector(Collector):
    """Reads the engine's connection pool at scrape time (no bookkeeping on the hot path)."""

    def __init__(self, owner: Metrics) -> None:
        self._owner = owner

    def describe(self) -> list[Any]:
        # Described lazily: with no engine bound there is nothing to report.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        engine = self._owner.engine
        if engine is None:
            return
        pool = engine.sync_engine.pool
        readings: list[tuple[str, str, Any]] = [
            ("size", "Configured number of pooled connections.", "size"),
            ("checked_out", "Connections currently in use.", "checkedout"),
            ("checked_in", "Idle connections held by the pool.", "checkedin"),
            ("overflow", "Connections open beyond the pool size.", "overflow"),
        ]
        for name, doc, method in readings:
            reader = getattr(pool, method, None)
            if not callable(reader):
                continue  # a pool type without this reading (NullPool, StaticPool …)
            value = reader()
            if not isinstance(value, int | float):
                continue
            if name == "overflow":
                # QueuePool counts overflow from -size upwards; negative means "spare room".
                value = max(0, value)
            yield GaugeMetricFamily(f"{NAMESPACE}_db_pool_{name}", doc, value=value)
        max_overflow = getattr(pool, "_max_overflow", None)
        if isinstance(max_overflow, int) and max_overflow >= 0:
            yield GaugeMetricFamily(
                f"{NAMESPACE}_db_pool_max_overflow",
                "Configured connections allowed beyond the pool size.",
                value=max_overflow,
            )


class Metrics:
    """One application's metrics and the registry they live in.

    Attributes:
        registry: The private registry `/metrics` renders.
        engine: The database engine whose pool is reported (bound when the app starts).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.engine: AsyncEngine | None = None
        self._http_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        r = self.registry
        http_labels = ("method", "route", "status_class")
        self.http_requests = Counter(
            "http_requests", "HTTP requests served.", http_labels, namespace=NAMESPACE, registry=r
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Time to serve an HTTP request, from its first byte to the end of the response.",
            http_labels,
            namespace=NAMESPACE,
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.http_in_flight = Gauge(
            "http_requests_in_flight",
            "HTTP requests being served right now.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.jobs = Counter(
            "jobs",
            "Background jobs finished, by task and outcome (`ok`, `error`).",
            ("task", "outcome"),
            namespace=NAMESPACE,
            registry=r,
        )
        self.job_duration = Histogram(
            "job_duration_seconds",
            "Background job run time.",
            ("task", "outcome"),
            namespace=NAMESPACE,
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.jobs_in_progress = Gauge(
            "jobs_in_progress",
            "Background jobs running right now in this process.",
            ("task",),
            namespace=NAMESPACE,
            registry=r,
        )
        self.provider_requests = Counter(
            "provider_requests",
            "Upstream institution HTTP attempts, by outcome (`ok`, `retry` or an error class).",
            ("provider", "operation", "outcome"),
            namespace=NAMESPACE,
            registry=r,
        )
        self.provider_duration = Histogram(
            "provider_request_duration_seconds",
            "Duration of one upstream institution HTTP attempt.",
            ("provider", "outcome"),
            namespace=NAMESPACE,
            buckets=PROVIDER_BUCKETS,
            registry=r,
        )
        self.token_refreshes = Counter(
            "token_refreshes",
            "Institution access-token refreshes, by outcome.",
            ("provider", "outcome"),
            namespace=NAMESPACE,
            registry=r,
        )
        self.sync_runs = Counter(
            "sync_runs",
            "Sync runs finished, by status.",
            ("status",),
            namespace=NAMESPACE,
            registry=r,
        )
        self.sync_rows = Counter(
            "sync_rows",
            "Transactions written by syncs, by change (`added`, `modified`, `removed`).",
            ("change",),
            namespace=NAMESPACE,
            registry=r,
        )
        self.sync_duration = Histogram(
            "sync_duration_seconds",
            "Sync run time.",
            ("status",),
            namespace=NAMESPACE,
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.rate_limit_rejections = Counter(
            "rate_limit_rejections",
            "Requests refused by a rate limit, by rule name.",
            ("rule",),
            namespace=NAMESPACE,
            registry=r,
        )
        r.register(_PoolCollector(self))
        # Pre-create the label-free children and the fixed `change` values so every series is
        # present (at 0) from the first scrape: `rate()` over a series that appears late loses
        # its first increment.
        for change in ("added", "modified", "removed"):
            self.sync_rows.labels(change=change)

    # --- lifecycle -----------------------------------------------------------------------

    def bind_engine(self, engine: AsyncEngine | None) -> None:
        """Report this engine's pool from now on."""
        self.engine = engine

    def render(self) -> bytes:
        """The registry in the Prometheus text format (`CONTENT_TYPE_LATEST`)."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample's current value (tests and diagnostics), or None when absent."""
        return self.registry.get_sample_value(name, labels or {})

    # --- recording -----------------------------------------------------------------------

    def http_request(self, method: str, route: str, status: int, duration: float) -> None:
        """Count one served request (`route` must be a template, never a raw path)."""
        key = (http_method(method), route, status_class(status))
        children = self._http_children.get(key)
        if children is None:
            # `labels()` validates and locks on every call; the label sets are few and bounded
            # (templates × methods × classes), so resolve each once and keep the children.
            children = (self.http_requests.labels(*key), self.http_duration.labels(*key))
            self._http_children[key] = children
        children[0].inc()
        children[1].observe(max(0.0, duration))

    def job_started(self, name: str) -> None:
        """A job began running in this process."""
        self.jobs_in_progress.labels(task=label(name)).inc()

    def job_finished(self, name: str, outcome: str, duration: float) -> None:
        """A job ended: `outcome` is `ok` or `error`."""
        task = label(name)
        self.jobs.labels(task=task, outcome=label(outcome)).inc()
        self.job_duration.labels(task=task, outcome=label(outcome)).observe(max(0.0, duration))
        self.jobs_in_progress.labels(task=task).dec()

    def provider_call(
        self, provider: str, outcome: str, duration: float, *, operation: str | None = None
    ) -> None:
        """One upstream attempt ended with `outcome` (`ok`, `retry`, or an error class)."""
        name = label(provider)
        result = label(outcome)
        self.provider_requests.labels(
            provider=name, operation=label(operation), outcome=result
        ).inc()
        self.provider_duration.labels(provider=name, outcome=result).observe(max(0.0, duration))

    def token_refresh(self, outcome: str, *, provider: str | None = None) -> None:
        """One token refresh ended with `outcome` (`ok`, `reauth_required`, `failed` …)."""
        self.token_refreshes.labels(provider=label(provider), outcome=label(outcome)).inc()

    def sync_finished(
        self, status: str, added: int, modified: int, removed: int, duration: float | None = None
    ) -> None:
        """A sync run finished with `status` and these transaction counts.

        `duration` is None when the caller does not know it (a run failed before it started
        working); the run is still counted, just not timed.
        """
        self.sync_runs.labels(status=label(status)).inc()
        for change, count in (("added", added), ("modified", modified), ("removed", removed)):
            if count > 0:
                self.sync_rows.labels(change=change).inc(count)
        if duration is not None:
            self.sync_duration.labels(status=label(status)).observe(max(0.0, duration))

    def rate_limited(self, rule: str) -> None:
        """A request was refused by the rate limit named `rule` (`login`, `user` …)."""
        self.rate_limit_rejections.labels(rule=label(rule)).inc()


# --- the active instance ---------------------------------------------------------------------

_bound: ContextVar[Metrics | None] = ContextVar("dashtam_metrics", default=None)
_default: Metrics | None = None


#: Where an application's `Metrics` lives in `resources.extras`.
METRICS_KEY = "metrics"


def for_resources(resources: AppResources | None) -> Metrics:
    """The `Metrics` already attached to `resources`, or a new one."""
    existing = resources.extras.get(METRICS_KEY) if resources is not None else None
    return existing if isinstance(existing, Metrics) else Metrics()


def install(resources: AppResources, metrics: Metrics) -> None:
    """Attach `metrics` to a started application: its pool, `/metrics`, the process default."""
    resources.extras[METRICS_KEY] = metrics
    metrics.bind_engine(resources.engine)
    activate(metrics)


def activate(metrics: Metrics) -> None:
    """Make `metrics` the process default (an application or worker starting)."""
    global _default
    _default = metrics


def bind(metrics: Metrics) -> Token[Metrics | None]:
    """Record into `metrics` in this context (a request, a job); undo with `reset(token)`."""
    return _bound.set(metrics)


def reset(token: Token[Metrics | None]) -> None:
    """Undo a `bind`."""
    _bound.reset(token)


def current() -> Metrics:
    """The metrics recording goes to: the bound one, else the process default."""
    global _default
    bound = _bound.get()
    if bound is not None:
        return bound
    if _default is None:
        _default = Metrics()
    return _default


def job_started(name: str) -> None:
    """A job began running (see `Metrics.job_started`)."""
    current().job_started(name)


def job_finished(name: str, outcome: str, duration: float) -> None:
    """A job ended (see `Metrics.job_finished`)."""
    current().job_finished(name, outcome, duration)


def provider_call(
    provider: str, outcome: str, duration: float, *, operation: str | None = None
) -> None:
    """One upstream attempt ended (see `Metrics.provider_call`)."""
    current().provider_call(provider, outcome, duration, operation=operation)


def token_refresh(outcome: str, *, provider: str | None = None) -> None:
    """One token refresh ended (see `Metrics.token_refresh`)."""
    current().token_refresh(outcome, provider=provider)


def sync_finished(
    status: str, added: int, modified: int, removed: int, duration: float | None = None
) -> None:
    """A sync run finished (see `Metrics.sync_finished`)."""
    current().sync_finished(status, added, modified, removed, duration)


def rate_limited(rule: str) -> None:
    """A rate limit refused a request (see `Metrics.rate_limited`)."""
    current().rate_limited(rule)
