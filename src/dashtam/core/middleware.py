"""The one pure-ASGI middleware at the edge of every Dashtam app.

`EdgeMiddleware` does, in one layer and one pass over the request headers: the `Host` check,
the request-body limit, the request id, the security headers, the HTTP metrics and the access
log. It used to be five stacked middlewares; each layer wrapped `send` in another closure and
re-scanned the headers, which cost more per request than the work itself on the hot
authenticated path. Pure ASGI (not `BaseHTTPMiddleware`) keeps context variables visible to the
error handlers.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashtam.core.errors import problem_body
from dashtam.core.observability.http import route_template
from dashtam.core.observability.metrics import Metrics, bind, reset
from dashtam.core.request_context import set_provider_id, set_request_id, set_user_id

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_access_logger = logging.getLogger("dashtam.http")

#: Paths whose responses carry credentials and must never be cached.
NO_STORE_PREFIXES = ("/api/v1/auth", "/api/v1/password-resets", "/api/v1/providers")

_HSTS = (b"strict-transport-security", b"max-age=63072000")
_BASE_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_NO_STORE = (b"cache-control", b"no-store")
_PRAGMA = (b"pragma", b"no-cache")


class HostPolicy:
    """Which `Host` headers an app serves: exact names, `*.example.com` wildcards, or `*`."""

    def __init__(self, allowed_hosts: Sequence[str]) -> None:
        self.allow_any = not allowed_hosts or "*" in allowed_hosts
        self.exact = {h.lower().strip("[]") for h in allowed_hosts if not h.startswith("*.")}
        self.suffixes = tuple(h[1:].lower() for h in allowed_hosts if h.startswith("*."))

    def allows(self, host_header: str) -> bool:
        """Whether a request with this `Host` header (port included or not) is served."""
        if self.allow_any:
            return True
        host = host_header.lower()
        if host.startswith("["):  # IPv6 literal, maybe with a port
            host = host[1 : host.find("]")] if "]" in host else host
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        return host in self.exact or (bool(self.suffixes) and host.endswith(self.suffixes))


class _BodyTooLarge(StarletteHTTPException):
    """Raised while streaming; an HTTPException so FastAPI's body parser re-raises it as-is."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"The request body exceeds {max_bytes} bytes.")


class EdgeMiddleware:
    """Host check, body limit, request id, security headers, metrics and access log.

    * Assigns (or echoes a valid incoming) `X-Request-ID`, binds it (and clears the user and
      provider ids) in the request's context, and writes one access-log line per request with
      the route template, never the query string (it can carry OAuth codes and states).
    * Rejects a `Host` the app does not serve (400 `invalid_host`) and bodies over
      `max_body_bytes`, declared or streamed (413 `payload_too_large`).
    * Adds HSTS (when served over TLS), nosniff, frame denial and referrer policy, and
      `Cache-Control: no-store` on credential routes.
    * Counts and times the request by method, route template and status class when `metrics`
      is given, and binds those metrics to the request's context so anything recorded while
      serving it lands in the same registry.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Sequence[str] = ("*",),
        max_body_bytes: int | None = None,
        hsts: bool = True,
        metrics: Metrics | None = None,
        no_store_prefixes: tuple[str, ...] = NO_STORE_PREFIXES,
    ) -> None:
        self.app = app
        self.hosts = HostPolicy(allowed_hosts)
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.no_store_prefixes = no_store_prefixes
        self.security_headers = ((_HSTS,) if hsts else ()) + _BASE_SECURITY_HEADERS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = incoming_id = ""
        declared = 0
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"x-request-id":
                incoming_id = value.decode("latin-1")
            elif name == b"content-length":
                declared = _int_or_zero(value)
        request_id = incoming_id if _VALID_REQUEST_ID.match(incoming_id) else uuid.uuid4().hex
        set_request_id(request_id)
        set_user_id(None)
        set_provider_id(None)
        scope.setdefault("state", {})["request_id"] = request_id
        metrics = self.metrics
        token = bind(metrics) if metrics is not None else None
        if metrics is not None:
            metrics.http_in_flight.inc()
        started = time.perf_counter()
        no_store = scope["path"].startswith(self.no_store_prefixes)
        # Unless a response starts, the request ended in an unhandled error: count it as 500.
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = self._response_headers(
                    message.get("headers", ()), request_id, no_store
                )
            await send(message)

        try:
            if not self.hosts.allows(host):
                await _send_problem(send_with_headers, 400, "invalid_host", _INVALID_HOST)
            elif self.max_body_bytes is not None and declared > self.max_body_bytes:
                await self._reject_body(send_with_headers)
            elif self.max_body_bytes is None:
                await self.app(scope, receive, send_with_headers)
            else:
                try:
                    await self.app(scope, self._limited(receive), send_with_headers)
                except _BodyTooLarge:
                    if not response_started:
                        await self._reject_body(send_with_headers)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            if metrics is not None and token is not None:
                metrics.http_in_flight.dec()
                metrics.http_request(scope["method"], route, status, elapsed)
                reset(token)
            _log_access(scope["method"], route, status, elapsed)

    def _response_headers(
        self, headers: Any, request_id: str, no_store: bool
    ) -> list[tuple[bytes, bytes]]:
        out = list(headers)
        present = {name.lower() for name, _ in out}
        out.append((b"x-request-id", request_id.encode("latin-1")))
        out.extend(pair for pair in self.security_headers if pair[0] not in present)
        if no_store:
            out = [pair for pair in out if pair[0].lower() != b"cache-control"]
            out.append(_NO_STORE)
            if b"pragma" not in present:
                out.append(_PRAGMA)
        return out

    def _limited(self, receive: Receive) -> Receive:
        limit = self.max_body_bytes
        assert limit is not None
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        return limited_receive

    async def _reject_body(self, send: Send) -> None:
        detail = f"The request body exceeds {self.max_body_bytes} bytes."
        await _send_problem(
            send, 413, "payload_too_large", ("Payload too large", detail), close=True
        )


_INVALID_HOST = (
    "Invalid host header",
    "The Host header names a host this server does not serve.",
)


def _int_or_zero(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


async def _send_problem(
    send: Send, status: int, code: str, text: tuple[str, str], *, close: bool = False
) -> None:
    title, detail = text
    body = json.dumps(problem_body(status=status, code=code, title=title, detail=detail)).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _log_access(method: str, route: str, status: int, elapsed: float) -> None:
    level = logging.WARNING if status >= 500 else logging.INFO
    if not _access_logger.isEnabledFor(level):
        return
    _access_logger.log(
        level,
        "http.request",
        extra={
            "fields": {
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
            }
        },
    )
