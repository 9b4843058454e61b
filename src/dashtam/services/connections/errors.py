"""Errors of the connections domain, each with its stable problem `code`."""

from __future__ import annotations

from typing import Any

from dashtam.core.errors import BadRequest, Conflict, NotFound, ServiceUnavailable


class ProviderNotFound(NotFound):
    """404: no such provider, or not the caller's (never 403: existence is not revealed)."""

    code = "provider_not_found"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail or "No such provider.", **kwargs)


class ProviderTypeNotFound(NotFound):
    """404: no institution is offered under that key."""

    code = "provider_type_not_found"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail or "No such provider type.", **kwargs)


class AliasTaken(Conflict):
    """409: the caller already has a provider with this alias."""

    code = "alias_taken"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail or "You already have a provider with this alias.", **kwargs)


class InvalidState(BadRequest):
    """400: the authorization `state` is malformed, unknown, expired, used or not this provider's.

    One answer for every case, so the endpoint is no oracle for which states exist.
    """

    code = "invalid_state"
    title = "Invalid authorization state"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(
            detail
            or "This authorization link is invalid, expired or was already used. "
            "Start the connection again.",
            **kwargs,
        )


class AuthorizationRefused(BadRequest):
    """400: the institution reported an error or refused the authorization code."""

    code = "authorization_failed"
    title = "Authorization failed"


class NotConnected(Conflict):
    """409: the provider has no usable tokens (never authorized, or disconnected)."""

    code = "not_connected"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(
            detail or "This provider is not connected; start an authorization first.", **kwargs
        )


class TokenRefreshBusy(ServiceUnavailable):
    """503: another refresh of this provider's tokens took longer than we were willing to wait."""

    code = "token_refresh_busy"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"Retry-After": "5"})
        super().__init__(
            detail or "The provider's tokens are being refreshed; try again shortly.", **kwargs
        )
