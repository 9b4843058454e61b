"""Pure-ASGI middleware: request ids and access logs, security headers, and the body limit.

Pure ASGI (not `BaseHTTPMiddleware`) keeps context variables visible to the error handlers
and costs less per request.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashtam.core.errors import problem_body
from dashtam.core.observability.http import route_template
from dashtam.core.request_context import set_provider_id, set_request_id, set_user_id

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_access_logger = logging.getLogger("dashtam.http")

#: Paths whose responses carry credentials and must never be cached.
_NO_STORE_PREFIXES = ("/api/v1/auth", "/api/v1/password-resets", "/api/v1/providers")


def _route_template(scope: Scope) -> str:
    # The full template (`/api/v1/providers/{provider_id}`), the same one the metrics use.
    return route_template(scope)


class RequestContextMiddleware:
    """Assigns (or echoes a valid incoming) `X-Request-ID` and writes one access log per request.

    The access log holds the route template, never the query string, which can carry OAuth
    codes and states.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = (
            incoming if incoming and _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        )
        set_request_id(request_id)
        set_user_id(None)
        set_provider_id(None)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_holder: dict[str, int] = {"status": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            status = status_holder["status"]
            level = logging.WARNING if status >= 500 else logging.INFO
            _access_logger.log(
                level,
                "http.request",
                extra={
                    "fields": {
                        "method": scope.get("method"),
                        "route": _route_template(scope),
                        "status": status,
                        "duration_ms": round(elapsed_ms, 2),
                    }
                },
            )


class SecurityHeadersMiddleware:
    """Adds HSTS, nosniff, frame denial and referrer policy; `no-store` on credential routes."""

    def __init__(self, app: ASGIApp, *, hsts: bool = True) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        no_store = path.startswith(_NO_STORE_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if self.hsts:
                    headers.setdefault("Strict-Transport-Security", "max-age=63072000")
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "no-referrer")
                if no_store:
                    headers["Cache-Control"] = "no-store"
                    headers.setdefault("Pragma", "no-cache")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _BodyTooLarge(StarletteHTTPException):
    """Raised while streaming; an HTTPException so FastAPI's body parser re-raises it as-is."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"The request body exceeds {max_bytes} bytes.")


class BodySizeLimitMiddleware:
    """Rejects request bodies over `max_bytes` with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._reject(send)
                    return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            problem_body(
                status=413,
                code="payload_too_large",
                title="Payload too large",
                detail=f"The request body exceeds {self.max_bytes} bytes.",
            )
        ).encode()
        headers: list[Any] = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class TrustedHostMiddleware:
    """Rejects requests whose `Host` is not allowed, with a problem+json 400.

    Patterns are exact host names or `*.example.com` wildcards; `*` allows any host.
    """

    def __init__(self, app: ASGIApp, *, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allow_any = "*" in allowed_hosts
        self.exact = {h.lower().strip("[]") for h in allowed_hosts if not h.startswith("*.")}
        self.suffixes = tuple(h[1:].lower() for h in allowed_hosts if h.startswith("*."))

    def _allowed(self, host_header: str) -> bool:
        host = host_header.lower()
        if host.startswith("["):  # IPv6 literal, maybe with a port
            host = host[1 : host.find("]")] if "]" in host else host
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        return host in self.exact or (bool(self.suffixes) and host.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allow_any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = ""
        for name, value in scope.get("headers", ()):
            if name == b"host":
                host = value.decode("latin-1")
                break
        if self._allowed(host):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            problem_body(
                status=400,
                code="invalid_host",
                title="Invalid host header",
                detail="The Host header names a host this server does not serve.",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
