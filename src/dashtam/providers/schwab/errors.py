"""Classify Schwab's error responses (token endpoint and Trader API) into typed provider errors.

Schwab's errors come in several shapes, all of which must be survived: OAuth JSON
(`{"error", "error_description"}`, sometimes with *another* JSON document nested as a string
inside `error_description`), Trader API `{"message", "errors": [...]}`, gateway
`{"errors": [{"status", "title", "detail"}]}`, Apigee faults, empty bodies, and HTML or
plain-text pages from the edge. An HTML 403 ("Access Denied") and a plain-text
"Requested route ... does not exist" 404 are transient edge glitches, not answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from dashtam.core.http_client import parse_retry_after
from dashtam.providers.errors import (
    AccessTokenRejected,
    AuthorizationFailed,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderUnavailable,
    ReauthRequired,
)

PROVIDER_KEY = "schwab"
_MAX_MESSAGE = 200


def _looks_like_html(response: httpx.Response) -> bool:
    content_type = response.headers.get("Content-Type", "").lower()
    if "html" in content_type:
        return True
    head = response.content[:64].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def _is_json(response: httpx.Response) -> bool:
    return "json" in response.headers.get("Content-Type", "").lower()


def is_edge_block(response: httpx.Response) -> bool:
    """The CDN/WAF's HTML "Access Denied" 403 (observed as transient)."""
    return response.status_code == 403 and _looks_like_html(response)


def is_route_glitch(response: httpx.Response) -> bool:
    """The gateway's plain-text "Requested route (...) does not exist." 404 (transient)."""
    if response.status_code != 404 or _is_json(response):
        return False
    return b"requested route" in response.content[:300].lower()


def is_transient(response: httpx.Response) -> bool:
    """Whether a Schwab response is worth retrying (5xx, 429 and the edge glitches)."""
    return (
        response.status_code >= 500
        or response.status_code == 429
        or is_edge_block(response)
        or is_route_glitch(response)
    )


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        value = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _nested_json(text: str) -> dict[str, Any] | None:
    """Find a JSON object embedded in a string, e.g. `400 Bad Request: "{\\"error\\":...}"`."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    candidate = text[start : end + 1]
    for attempt in (candidate, candidate.replace('\\"', '"')):
        try:
            value = json.loads(attempt)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


@dataclass(frozen=True)
class TokenError:
    """What a failed token-endpoint call said, reduced to codes safe to log.

    Attributes:
        status: HTTP status.
        error: The OAuth `error` code, if any.
        inner_error: The `error` of a JSON document nested inside `error_description`.
        html: The body was an HTML page (edge block), not an OAuth answer.
    """

    status: int
    error: str | None
    inner_error: str | None
    html: bool

    @property
    def reason(self) -> str:
        """The most specific code available (`refresh_token_authentication_error`, ...)."""
        return self.inner_error or self.error or f"http_{self.status}"


def parse_token_error(response: httpx.Response) -> TokenError:
    """Read the OAuth error out of a token-endpoint response of any observed shape."""
    body = _json_object(response)
    error: str | None = None
    inner: str | None = None
    if body is not None:
        raw_error = body.get("error")
        error = raw_error if isinstance(raw_error, str) else None
        description = body.get("error_description")
        if isinstance(description, str):
            nested = _nested_json(description)
            if nested is not None and isinstance(nested.get("error"), str):
                inner = nested["error"]
    return TokenError(response.status_code, error, inner, _looks_like_html(response))


def _transient_token_failure(response: httpx.Response, info: TokenError) -> ProviderError | None:
    if response.status_code == 429:
        return ProviderRateLimited(
            provider=PROVIDER_KEY,
            reason="http_429",
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if response.status_code >= 500 or is_edge_block(response):
        return ProviderUnavailable(
            provider=PROVIDER_KEY,
            reason="edge_block" if info.html else f"http_{response.status_code}",
            status=response.status_code,
        )
    return None


def refresh_failure(response: httpx.Response) -> ProviderError:
    """The error for a non-2xx refresh reply.

    Anything that is not transient means the refresh token is no good any more (expired after
    7 days, superseded by a newer login, revoked) or our client was refused: only a new login
    helps, so it is `ReauthRequired` and never retried.
    """
    info = parse_token_error(response)
    transient = _transient_token_failure(response, info)
    if transient is not None:
        return transient
    return ReauthRequired(provider=PROVIDER_KEY, reason=info.reason)


def exchange_failure(response: httpx.Response) -> ProviderError:
    """The error for a non-2xx authorization-code exchange reply."""
    info = parse_token_error(response)
    transient = _transient_token_failure(response, info)
    if transient is not None:
        return transient
    misconfigured = info.error == "invalid_client" or info.inner_error == "invalid_client"
    return AuthorizationFailed(
        provider=PROVIDER_KEY, reason=info.reason, client_misconfigured=misconfigured
    )


def api_error_message(response: httpx.Response) -> str | None:
    """A short human message from any Trader API error shape (for logs), or None."""
    body = _json_object(response)
    if body is None:
        return None
    message = body.get("message")
    if isinstance(message, str):
        return message[:_MAX_MESSAGE]
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        first = errors[0]
        if isinstance(first, Mapping):
            detail = first.get("detail") or first.get("title")
            if isinstance(detail, str):
                return detail[:_MAX_MESSAGE]
        if isinstance(first, str):
            return first[:_MAX_MESSAGE]
    fault = body.get("fault")
    if isinstance(fault, Mapping) and isinstance(fault.get("faultstring"), str):
        return str(fault["faultstring"])[:_MAX_MESSAGE]
    return None


def data_failure(response: httpx.Response) -> ProviderError:
    """The error for a non-2xx Trader API reply (after the HTTP layer's retries)."""
    status = response.status_code
    if status == 401:
        return AccessTokenRejected(provider=PROVIDER_KEY, reason="http_401")
    if status == 429:
        return ProviderRateLimited(
            provider=PROVIDER_KEY,
            reason="http_429",
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status >= 500 or is_edge_block(response) or is_route_glitch(response):
        return ProviderUnavailable(
            provider=PROVIDER_KEY,
            reason="edge_block" if is_edge_block(response) else f"http_{status}",
            status=status,
        )
    return ProviderRequestRejected(
        f"The institution rejected the request (HTTP {status}).",
        provider=PROVIDER_KEY,
        reason="not_found" if status == 404 else f"http_{status}",
        status=status,
    )
