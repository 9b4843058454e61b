"""Typed provider errors, and their one mapping to the API's problem responses.

Provider clients raise these; they know nothing about HTTP responses to *our* clients.
Services translate them with `to_app_error`, so every endpoint answers an institution's
failure the same way. Messages never carry tokens, codes or the institution's raw error text
(which can include token digests).
"""

from __future__ import annotations

import math

from dashtam.core.errors import (
    AppError,
    BadGateway,
    BadRequest,
    Conflict,
    GatewayTimeout,
    ServiceUnavailable,
)


class ProviderError(Exception):
    """Base for every failure talking to an institution.

    Attributes:
        provider: The provider key (`schwab`).
        reason: A short machine-readable cause (`invalid_grant`, `http_503`, `timeout`).
    """

    default_message = "The institution call failed."

    def __init__(
        self, message: str | None = None, *, provider: str = "", reason: str | None = None
    ) -> None:
        self.provider = provider
        self.reason = reason
        super().__init__(message or self.default_message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider!r}, reason={self.reason!r})"


class ProviderNotConfigured(ProviderError):
    """The provider's credentials (app key / secret) are not set on this server."""

    default_message = "This institution is not configured on this server."


class UnknownProvider(ProviderError, KeyError):
    """No provider is registered under that key."""

    default_message = "Unknown institution."

    def __str__(self) -> str:
        # KeyError quotes its argument; keep the plain message.
        return str(self.args[0]) if self.args else self.default_message


class ReauthRequired(ProviderError):
    """The refresh token is dead (expired, superseded, revoked) or the client was refused.

    Never retried: only a new interactive login helps.
    """

    default_message = "The institution needs the account holder to sign in again."


class AuthorizationFailed(ProviderError):
    """The institution refused an authorization-code exchange.

    Attributes:
        client_misconfigured: True when the institution rejected *our* app credentials
            (`invalid_client`), which no retry by the account holder can fix.
    """

    default_message = "The institution refused the authorization."

    def __init__(
        self,
        message: str | None = None,
        *,
        provider: str = "",
        reason: str | None = None,
        client_misconfigured: bool = False,
    ) -> None:
        super().__init__(message, provider=provider, reason=reason)
        self.client_misconfigured = client_misconfigured


class AccessTokenRejected(ProviderError):
    """A data call answered 401: refresh the access token once and retry the call once."""

    default_message = "The institution rejected the access token."


class ProviderUnavailable(ProviderError):
    """5xx, an edge block, or a connection failure that outlasted the retries.

    Attributes:
        timeout: True when the institution did not answer in time (504 rather than 503).
        status: The last upstream status, if a response arrived.
    """

    default_message = "The institution is not available right now."

    def __init__(
        self,
        message: str | None = None,
        *,
        provider: str = "",
        reason: str | None = None,
        timeout: bool = False,
        status: int | None = None,
    ) -> None:
        super().__init__(message, provider=provider, reason=reason)
        self.timeout = timeout
        self.status = status


class ProviderRateLimited(ProviderError):
    """The institution (or our own request budget for it) said "slow down".

    Attributes:
        retry_after: Seconds to wait, when known.
    """

    default_message = "The institution is rate limiting requests."

    def __init__(
        self,
        message: str | None = None,
        *,
        provider: str = "",
        reason: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, reason=reason)
        self.retry_after = retry_after


class ProviderBadResponse(ProviderError):
    """The institution answered something we cannot read (malformed JSON, wrong shape)."""

    default_message = "The institution sent a response we could not read."


class ProviderRequestRejected(ProviderError):
    """A data call was refused with a non-auth 4xx (bad parameter, unknown account hash).

    Attributes:
        status: The upstream status.
    """

    default_message = "The institution rejected the request."

    def __init__(
        self,
        message: str | None = None,
        *,
        provider: str = "",
        reason: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, provider=provider, reason=reason)
        self.status = status


def _seconds(value: float | None, default: int) -> int:
    return default if value is None else max(1, math.ceil(value))


def to_app_error(exc: ProviderError) -> AppError:
    """Translate a provider error into the problem response our API answers with.

    | provider error | status | code |
    | --- | --- | --- |
    | `ProviderNotConfigured` | 400 | `provider_not_configured` |
    | `UnknownProvider` | 400 | `unknown_provider` |
    | `AuthorizationFailed` | 400 | `authorization_failed` |
    | `ReauthRequired` | 409 | `reauth_required` |
    | `ProviderRateLimited` | 503 + `Retry-After` | `provider_rate_limited` |
    | `ProviderUnavailable` (timeout) | 504 | `provider_timeout` |
    | `ProviderUnavailable` | 503 | `provider_unavailable` |
    | anything else (bad response, rejected request, 401 after a refresh) | 502 | `provider_error` |

    Upstream rate limiting answers 503 rather than 429: the caller did nothing wrong, the
    institution is temporarily unable to serve, and `Retry-After` says when to come back.

    Args:
        exc: The provider error.

    Returns:
        The `AppError` to raise; its detail is generic and safe to show.
    """
    if isinstance(exc, ProviderNotConfigured):
        return BadRequest(str(exc), code="provider_not_configured")
    if isinstance(exc, UnknownProvider):
        return BadRequest(str(exc), code="unknown_provider")
    if isinstance(exc, AuthorizationFailed):
        return BadRequest(
            "The institution refused the authorization; start the connection again.",
            code="authorization_failed",
        )
    if isinstance(exc, ReauthRequired):
        return Conflict(str(exc), code="reauth_required")
    if isinstance(exc, ProviderRateLimited):
        return ServiceUnavailable(
            str(exc),
            code="provider_rate_limited",
            headers={"Retry-After": str(_seconds(exc.retry_after, 30))},
        )
    if isinstance(exc, ProviderUnavailable):
        if exc.timeout:
            return GatewayTimeout(str(exc), code="provider_timeout")
        return ServiceUnavailable(
            str(exc), code="provider_unavailable", headers={"Retry-After": "30"}
        )
    return BadGateway(str(exc), code="provider_error")
