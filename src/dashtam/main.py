"""The FastAPI application factory and its lifespan. Nothing is built at import time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.ext.asyncio import AsyncEngine

from dashtam import __version__
from dashtam.api.router import include_api_routes
from dashtam.api.routes import health
from dashtam.api.routes import metrics as metrics_route
from dashtam.core.config import ConfigurationError, Settings, load_settings
from dashtam.core.crypto import TokenVault
from dashtam.core.database import (
    create_engine,
    create_read_session_factory,
    create_session_factory,
)
from dashtam.core.errors import DEPENDENCY_ERRORS, install_error_handlers
from dashtam.core.gc_pauses import freeze_startup
from dashtam.core.kv import KeyValueStore, create_kv_store
from dashtam.core.logging import configure_logging, log_event
from dashtam.core.middleware import EdgeMiddleware
from dashtam.core.observability import metrics
from dashtam.core.ratelimit import RateLimiter
from dashtam.core.state import AppResources
from dashtam.providers.registry import registry_from
from dashtam.schemas.health import CheckResult
from dashtam.services.email import build_email_service

logger = logging.getLogger("dashtam.app")


async def build_resources(settings: Settings) -> AppResources:
    """Create the engine, session factory and KV store for one application instance."""
    engine = create_engine(settings.effective_database_url, settings)
    kv = create_kv_store(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        pool_timeout=settings.redis_pool_timeout,
        socket_timeout=settings.redis_socket_timeout,
    )
    return assemble_resources(settings, engine, kv)


def assemble_resources(settings: Settings, engine: AsyncEngine, kv: KeyValueStore) -> AppResources:
    """Build every application service over an existing engine and KV store.

    Tests call this with the shared test engine; `build_resources` with fresh ones.
    """
    resources = AppResources(
        settings=settings,
        engine=engine,
        session_factory=create_session_factory(engine),
        kv=kv,
        read_session_factory=create_read_session_factory(engine),
    )
    # Institution clients (one pooled HTTP client each); closed by `resources.close()`.
    registry_from(resources)
    _add_security_resources(resources)
    return resources


def _add_security_resources(resources: AppResources) -> None:
    """Add the rate limiter, the token vault and the email service to `resources.extras`."""
    settings = resources.settings
    limiter = RateLimiter(
        redis_url=settings.redis_url,
        enabled=settings.rate_limit_enabled,
        pool_timeout=settings.redis_pool_timeout,
        socket_timeout=settings.redis_socket_timeout,
    )
    # The per-user budget on every authenticated request is hot and high (600/min): a sliding
    # window counter costs O(1) per hit, where the exact moving window keeps a list per user.
    user_limiter = RateLimiter(
        redis_url=settings.redis_url,
        enabled=settings.rate_limit_enabled,
        strategy="sliding-window-counter",
        pool_timeout=settings.redis_pool_timeout,
        socket_timeout=settings.redis_socket_timeout,
    )
    resources.extras["rate_limiter"] = limiter
    resources.extras["user_rate_limiter"] = user_limiter
    resources.extras["rate_limiter_health"] = lambda: _worst_health(limiter, user_limiter)
    resources.add_closer(limiter.aclose)
    resources.add_closer(user_limiter.aclose)
    keys = settings.encryption_keys or settings.ensure_secrets().encryption_keys
    if keys is None:
        raise ConfigurationError("ENCRYPTION_KEYS is not set")
    resources.extras["vault"] = TokenVault.from_setting(keys.get_secret_value())
    resources.extras["email"] = build_email_service(settings)


def _worst_health(*limiters: RateLimiter) -> CheckResult:
    results = [limiter.health() for limiter in limiters]
    return next((r for r in results if r.status == "down"), results[0])


async def _refuse_stale_schema(resources: AppResources) -> None:
    """Stop start-up when the database is not at the code's migration head.

    An unmigrated database would otherwise fail on the first query of each request. When the
    database is unreachable we start anyway: `/health` reports it and recovers by itself.
    """
    from dashtam.core.migrations import schema_problem

    try:
        problem = await schema_problem(resources.engine)
    except DEPENDENCY_ERRORS:
        log_event(logger, "app.schema_check_skipped", logging.WARNING, reason="database down")
        return
    if problem:
        await resources.close()
        raise ConfigurationError(problem)


def create_app(settings: Settings | None = None, resources: AppResources | None = None) -> FastAPI:
    """Build the API application.

    Args:
        settings: Explicit settings (tests); read from the environment when omitted.
        resources: Pre-built resources (tests share one engine); the caller closes them.

    Returns:
        A FastAPI app whose lifespan creates and closes every resource.
    """
    settings = settings or (resources.settings if resources else load_settings())
    configure_logging(settings.log_level, settings.log_format)
    # Built now (the middleware needs it), attached to the resources when the app starts.
    app_metrics = metrics.for_resources(resources)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if resources is not None:
            app.state.resources = resources
            metrics.install(resources, app_metrics)
            yield
            return
        if settings.should_auto_migrate:
            from dashtam.core.migrations import upgrade_to_head

            await asyncio.to_thread(upgrade_to_head, settings.effective_database_url)
        owned = await build_resources(settings)
        if not settings.should_auto_migrate:
            await _refuse_stale_schema(owned)
        app.state.resources = owned
        metrics.install(owned, app_metrics)
        # Embedded: jobs and the scheduler run on this loop; with Redis: enqueue only.
        from dashtam.jobs.runtime import start_jobs

        await start_jobs(owned)
        # Long-lived from here on: never walk them again in a full collection.
        freeze_startup()
        log_event(
            logger,
            "app.started",
            environment=settings.environment,
            database="sqlite" if settings.uses_sqlite else "postgresql",
            kv=owned.kv.backend,
        )
        try:
            yield
        finally:
            await owned.close()
            log_event(logger, "app.stopped")

    docs = settings.docs_enabled
    app = FastAPI(
        title="Dashtam API",
        version=__version__,
        summary="One trustworthy view of accounts, balances, positions and transactions.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    include_api_routes(app)
    if settings.metrics_enabled:
        app.include_router(metrics_route.router)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "Location",
            ],
        )
    # Outermost: even a rejected host or an oversized body gets a request id, security
    # headers, a metric and an access-log line.
    app.add_middleware(
        EdgeMiddleware,
        allowed_hosts=settings.allowed_hosts or ["*"],
        max_body_bytes=settings.max_body_bytes,
        hsts=settings.tls_enabled,
        metrics=app_metrics if settings.metrics_enabled else None,
    )
    return app
