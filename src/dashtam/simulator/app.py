"""The simulator's app factory and its outermost layer: correlation ids, stats, faults.

`create_simulator_app()` (no arguments: `dashtam simulator` and uvicorn call it) reads the
settings; tests pass their own. Faults are applied before any routing so they can hit every
path except `/control` and `/health`, and a dropped connection really closes the socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import uuid
from contextlib import suppress

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from dashtam import __version__
from dashtam.core.config import Settings, load_settings
from dashtam.core.logging import configure_logging, log_event
from dashtam.core.middleware import EdgeMiddleware
from dashtam.core.types import utcnow
from dashtam.simulator import control, oauth, trader
from dashtam.simulator.errors import SchwabError, SimulatedConnectionDrop, gateway_error
from dashtam.simulator.pages import error_page
from dashtam.simulator.state import Fault, Options, SimulatorState

logger = logging.getLogger("dashtam.simulator")

CORREL_HEADER = "Schwab-Client-CorrelId"
#: Paths faults never touch, so tests can always steer and observe the simulator.
_UNFAULTED = ("/control", "/health")
_MALFORMED_BODY = b'{"securitiesAccount": {"type": "MARGIN", "accountNumber": "1234'


class SimulatorApp(FastAPI):
    """FastAPI whose outermost `__call__` adds correlation ids, counts requests, injects faults."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection event."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        state: SimulatorState = self.state.simulator
        path: str = scope.get("path", "")
        correl_id = str(uuid.uuid4())

        async def send_with_correl(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[CORREL_HEADER] = correl_id
            await send(message)

        method = scope.get("method")
        fault = None if path.startswith(_UNFAULTED) else state.faults.take(path)
        if fault is not None:
            log_event(logger, "simulator.fault.injected", kind=fault.kind, path=path)
            if fault.kind != "latency":
                # These never reach routing, so they are counted under their raw path.
                state.stats.requests[f"{method} {path}"] += 1
            if fault.kind == "drop":
                await _drop_connection(receive, send)
                return
            if fault.kind == "latency":
                await asyncio.sleep(fault.latency_ms / 1000)
            else:
                await _fault_response(fault)(scope, receive, send_with_correl)
                return
        try:
            await super().__call__(scope, receive, send_with_correl)
        finally:
            # Routing stores the matched route in the scope: count by its template.
            route_path = getattr(scope.get("route"), "path", None)
            state.stats.requests[f"{method} {route_path or '<unmatched>'}"] += 1


def _fault_response(fault: Fault) -> Response:
    if fault.kind == "malformed":
        return Response(_MALFORMED_BODY, status_code=200, media_type="application/json")
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    if fault.body == "empty":
        return Response(b"", status_code=fault.status, headers=headers)
    if fault.body == "html":
        return Response(
            error_page("You don't have permission to access this resource."),
            status_code=fault.status,
            media_type="text/html",
            headers=headers,
        )
    titles = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
    error = gateway_error(fault.status, titles.get(fault.status, "Error"), "Simulated fault")
    return Response(
        error.content(), status_code=fault.status, media_type="application/json", headers=headers
    )


async def _drop_connection(receive: Receive, send: Send) -> None:
    """Close the client's connection without sending any response.

    Under uvicorn, `send` is bound to the request cycle that owns the socket's transport:
    aborting it hangs up for real. Then wait for uvicorn to notice, so it does not try to
    answer with a 500 of its own. In-process (no socket) raise a transport error instead.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        raise SimulatedConnectionDrop("Server disconnected without sending a response.")
    transport.abort()
    with suppress(TimeoutError):
        async with asyncio.timeout(2.0):
            while (await receive())["type"] != "http.disconnect":
                pass


async def _schwab_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SchwabError)
    return Response(
        exc.content(), status_code=exc.status, media_type=exc.media_type, headers=exc.headers
    )


async def _unexpected_error_handler(request: Request, exc: Exception) -> Response:
    logger.exception("simulator.error")
    body = {"message": "Internal Server Error", "errors": ["Internal Server Error"]}
    return Response(json.dumps(body).encode(), status_code=500, media_type="application/json")


def _credentials(settings: Settings) -> tuple[str, str]:
    """The registered app key and secret; random ones (saved privately) when unset."""
    client_id = settings.simulator_client_id
    secret = settings.simulator_client_secret
    if client_id and secret is not None:
        return client_id, secret.get_secret_value()
    client_id = client_id or secrets.token_hex(16)
    secret_value = secret.get_secret_value() if secret is not None else secrets.token_hex(32)
    path = settings.var_dir / "simulator-credentials.json"
    try:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"client_id": client_id, "client_secret": secret_value}, handle)
        where: str | None = str(path)
    except OSError:
        where = None
    # Never log the values: only that they were generated and where a person can read them.
    log_event(logger, "simulator.credentials.generated", file=where)
    return client_id, secret_value


def build_state(settings: Settings) -> SimulatorState:
    """The simulator state for these settings (start time, credentials, options)."""
    client_id, client_secret = _credentials(settings)
    control_token = settings.simulator_control_token
    return SimulatorState(
        client_id=client_id,
        client_secret=client_secret,
        redirect_uris=list(settings.simulator_redirect_uris),
        start=settings.simulator_start_time or utcnow(),
        clock_running=settings.simulator_clock_running,
        seed=settings.simulator_seed,
        whale_years=settings.simulator_whale_years,
        rate_limit=settings.simulator_rate_limit,
        options=Options(
            refresh_mode=settings.simulator_refresh_mode,
            transaction_detail_shape=settings.simulator_transaction_detail_shape,
            cancelled_transactions=settings.simulator_cancelled_transactions,
        ),
        control_token=control_token.get_secret_value() if control_token else None,
    )


def create_simulator_app(settings: Settings | None = None) -> SimulatorApp:
    """Build the simulator app.

    Args:
        settings: Explicit settings (tests); read from the environment when omitted.

    Returns:
        The ASGI app, its state already created (the clock starts now).
    """
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = SimulatorApp(
        title="Dashtam Schwab simulator",
        version=__version__,
        summary="A Schwab-compatible institution (OAuth + Trader API) for development and tests.",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.simulator = build_state(settings)
    app.add_exception_handler(SchwabError, _schwab_error_handler)
    app.add_exception_handler(Exception, _unexpected_error_handler)

    @app.get("/health/live", tags=["health"])
    async def live() -> JSONResponse:
        """Answer while the process runs."""
        return JSONResponse({"status": "ok"})

    app.include_router(oauth.router)
    app.include_router(trader.router)
    app.include_router(control.router)
    app.add_middleware(EdgeMiddleware, hsts=settings.tls_enabled)
    state = app.state.simulator
    log_event(
        logger,
        "simulator.started",
        start=state.clock.start.isoformat(),
        redirect_uris=list(state.redirect_uris),
        refresh_mode=state.options.refresh_mode,
    )
    return app
