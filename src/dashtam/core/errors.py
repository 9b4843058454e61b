"""The application's error hierarchy and its RFC 9457 `application/problem+json` rendering.

Services raise `AppError` subclasses that know their HTTP status and stable `code`; one set of
handlers renders every error — ours, routing, validation and unexpected ones — the same way.
Unexpected errors answer a generic 500 with the request id, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from dashtam.core.kv import KeyValueUnavailable
from dashtam.core.request_context import current_request_id

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://dashtam.dev/problems/"

logger = logging.getLogger("dashtam.errors")


class AppError(Exception):
    """Base for every error a client may see. Subclasses set `status`, `code` and `title`."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.title
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(self.detail)


class BadRequest(AppError):
    """400: well-formed but not acceptable."""


class Unauthorized(AppError):
    """401: missing or bad credentials."""

    status = 401
    code = "unauthorized"
    title = "Not authenticated"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class Forbidden(AppError):
    """403: authenticated but not allowed (never used to hide existence: see NotFound)."""

    status = 403
    code = "forbidden"
    title = "Forbidden"


class NotFound(AppError):
    """404: not found, or not yours."""

    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(AppError):
    """409: the request conflicts with the current state."""

    status = 409
    code = "conflict"
    title = "Conflict"


class UnprocessableEntity(AppError):
    """422: the request does not validate."""

    status = 422
    code = "validation_error"
    title = "Validation error"


class TooManyRequests(AppError):
    """429: rate limited; carries `Retry-After`."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.headers.setdefault("Retry-After", str(max(1, int(retry_after))))


class ServiceUnavailable(AppError):
    """503: a dependency is down."""

    status = 503
    code = "service_unavailable"
    title = "Service unavailable"


class BadGateway(AppError):
    """502: an upstream institution answered with garbage or an error."""

    status = 502
    code = "bad_gateway"
    title = "Bad gateway"


class GatewayTimeout(AppError):
    """504: an upstream institution did not answer in time."""

    status = 504
    code = "gateway_timeout"
    title = "Gateway timeout"


def problem_body(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the RFC 9457 body with our `code` and `request_id` members."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code.replace("_", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": current_request_id(),
    }
    if extra:
        body.update(extra)
    return body


def problem_response(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """Render a problem as a response with the problem+json media type."""
    return JSONResponse(
        problem_body(status=status, code=code, title=title, detail=detail, extra=extra),
        status_code=status,
        headers=dict(headers or {}),
        media_type=PROBLEM_CONTENT_TYPE,
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _http_code(status: int) -> str:
    return _HTTP_CODES.get(status, f"http_{status}")


def _clean_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    # Echoing the rejected input back could reflect a password or a token: keep loc/msg/type.
    return [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in errors
    ]


async def _app_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return problem_response(
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        headers=exc.headers,
        extra=exc.extra,
    )


async def _http_exception_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    detail = exc.detail if isinstance(exc.detail, str) else phrase
    return problem_response(
        status=status,
        code=_http_code(status),
        title=phrase,
        detail=detail,
        headers=exc.headers,
    )


async def _validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _clean_errors(exc.errors())
    return problem_response(
        status=422,
        code="validation_error",
        title="Validation error",
        detail="The request did not validate; see `errors`.",
        extra={"errors": errors},
    )


async def _unhandled_handler(_request: Request, exc: Exception) -> JSONResponse:
    logger.error(
        "http.unhandled_error",
        extra={"fields": {"error_type": type(exc).__name__}},
        exc_info=exc,
    )
    response = problem_response(
        status=500,
        code="internal_error",
        title="Internal server error",
        detail="Something went wrong on our side. Quote the request id when reporting it.",
    )
    # This handler runs outside our middleware, so it must label the response itself.
    request_id = current_request_id()
    if request_id:
        response.headers["X-Request-ID"] = request_id
    return response


#: Failures that mean a dependency (database, Redis) is unreachable or overloaded right now.
DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    KeyValueUnavailable,
    ConnectionError,
    TimeoutError,
)


async def _dependency_down_handler(_request: Request, exc: Exception) -> JSONResponse:
    logger.warning(
        "http.dependency_unavailable",
        extra={"fields": {"error_type": type(exc).__name__}},
    )
    return problem_response(
        status=503,
        code="service_unavailable",
        title="Service unavailable",
        detail="A backing service is unavailable right now; retry shortly.",
        headers={"Retry-After": "2"},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through the problem+json renderers."""
    for error_type in DEPENDENCY_ERRORS:
        app.add_exception_handler(error_type, _dependency_down_handler)
    app.add_exception_handler(AppError, _app_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(Exception, _unhandled_handler)
