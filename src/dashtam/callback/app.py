"""The OAuth callback server (`dashtam callback`, https://127.0.0.1:8182 by default).

Institutions redirect the account holder's browser here (`/?code=…&state=…`, or `error=…`).
The server reads the provider id from the state's prefix, hands code and state to the API's
callback endpoint over HTTPS (trusting our local CA), and shows a small escaped HTML page
saying whether the connection worked. It stores nothing and never logs the code, the state
or any token: the access log holds the route template only.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse

from dashtam import __version__
from dashtam.callback.pages import render_result_page
from dashtam.core.config import Settings, load_settings
from dashtam.core.errors import install_error_handlers
from dashtam.core.logging import configure_logging, log_event
from dashtam.core.middleware import EdgeMiddleware
from dashtam.core.request_context import current_request_id
from dashtam.core.tls import client_ssl_context

logger = logging.getLogger("dashtam.callback")

API_CALLBACK_PATH = "/api/v1/providers/{provider_id}/authorization/callback"
#: Generous: the API exchanges the code with the institution before answering.
API_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
HEALTH_TIMEOUT = 1.5


def provider_id_of(state: str | None) -> uuid.UUID | None:
    """The provider id a state starts with (`<provider id>.<random>`), or None."""
    if not state or "." not in state:
        return None
    prefix = state.split(".", 1)[0]
    try:
        return uuid.UUID(prefix)
    except ValueError:
        return None


def _api_client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    verify: Any = True
    ca_file = settings.tls_ca_file
    # Trust exactly our local CA when it exists (verification stays on either way).
    if settings.callback_api_base_url.startswith("https") and ca_file and ca_file.exists():
        verify = client_ssl_context(ca_file)
    return httpx.AsyncClient(
        base_url=settings.callback_api_base_url,
        verify=verify,
        timeout=API_TIMEOUT,
        transport=transport,
        follow_redirects=False,
        headers={"User-Agent": f"Dashtam-Callback/{__version__}"},
    )


def _page(status: int, *, ok: bool, title: str, message: str) -> HTMLResponse:
    page = render_result_page(ok=ok, title=title, message=message, reference=current_request_id())
    return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})


def _problem_text(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        title = body.get("title")
        detail = body.get("detail")
        if isinstance(title, str) and isinstance(detail, str):
            return title, detail
    return "Not connected", "Dashtam could not complete the connection. Try again later."


def create_callback_app(
    settings: Settings | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """Build the callback server.

    Args:
        settings: Explicit settings (tests); read from the environment when omitted.
        transport: Replacement transport for the calls to the API (tests use the ASGI app).

    Returns:
        The application; its lifespan owns the HTTP client to the API.
    """
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = _api_client(settings, transport)
        app.state.api = client
        log_event(logger, "callback.started", api=settings.callback_api_base_url)
        try:
            yield
        finally:
            await client.aclose()

    app = FastAPI(
        title="Dashtam OAuth callback",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    install_error_handlers(app)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def receive(
        request: Request,
        code: Annotated[str | None, Query(max_length=2048)] = None,
        state: Annotated[str | None, Query(max_length=256)] = None,
        error: Annotated[str | None, Query(max_length=256)] = None,
    ) -> HTMLResponse:
        """Hand the institution's redirect to the API and tell the person how it went."""
        provider_id = provider_id_of(state)
        if provider_id is None or not (code or error):
            log_event(logger, "callback.rejected", logging.WARNING, reason="malformed")
            return _page(
                400,
                ok=False,
                title="Invalid link",
                message="This sign-in link is incomplete or damaged. Start the connection "
                "again from your app.",
            )
        params = {
            name: value
            for name, value in (("code", code), ("state", state), ("error", error))
            if value
        }
        headers = {"Accept": "application/json"}
        if (request_id := current_request_id()) is not None:
            headers["X-Request-ID"] = request_id
        if request.client is not None:
            headers["X-Forwarded-For"] = request.client.host
        api: httpx.AsyncClient = request.app.state.api
        try:
            response = await api.get(
                API_CALLBACK_PATH.format(provider_id=provider_id), params=params, headers=headers
            )
        except httpx.HTTPError as exc:
            log_event(
                logger, "callback.api_unreachable", logging.ERROR, error_type=type(exc).__name__
            )
            return _page(
                502,
                ok=False,
                title="Dashtam is unreachable",
                message="The sign-in worked at the institution, but Dashtam could not be "
                "reached to finish connecting. Start the connection again in a moment.",
            )
        if response.status_code == 200:
            body = response.json()
            message = body.get("message") if isinstance(body, dict) else None
            log_event(logger, "callback.completed", provider_id=str(provider_id))
            return _page(
                200,
                ok=True,
                title="Connected",
                message=message if isinstance(message, str) else "Connected.",
            )
        title, detail = _problem_text(response)
        log_event(
            logger,
            "callback.failed",
            logging.WARNING,
            provider_id=str(provider_id),
            status=response.status_code,
        )
        status = response.status_code if response.status_code < 500 else 502
        return _page(status, ok=False, title=title, message=detail)

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        """Answer while the process runs."""
        return {"status": "ok"}

    @app.get("/health", include_in_schema=False)
    async def health(request: Request) -> dict[str, Any]:
        """Whether the API behind this server answers."""
        api: httpx.AsyncClient = request.app.state.api
        started = time.perf_counter()
        try:
            reply = await api.get("/health/live", timeout=HEALTH_TIMEOUT)
            api_ok = reply.status_code == 200
        except httpx.HTTPError:
            api_ok = False
        latency = round((time.perf_counter() - started) * 1000, 1)
        return {
            "status": "healthy" if api_ok else "degraded",
            "version": __version__,
            "checks": {"api": {"status": "ok" if api_ok else "down", "latency_ms": latency}},
        }

    app.add_middleware(
        EdgeMiddleware,
        allowed_hosts=settings.allowed_hosts or ["*"],
        max_body_bytes=settings.max_body_bytes,
        hsts=settings.tls_enabled,
    )
    return app
