"""Provider errors map to one set of problem responses, with safe, generic details."""

from __future__ import annotations

import pytest

from dashtam.core.errors import AppError
from dashtam.providers.errors import (
    AccessTokenRejected,
    AuthorizationFailed,
    ProviderBadResponse,
    ProviderError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderUnavailable,
    ReauthRequired,
    UnknownProvider,
    to_app_error,
)


class TestToAppError:
    @pytest.mark.parametrize(
        ("error", "status", "code"),
        [
            (ProviderNotConfigured(provider="schwab"), 400, "provider_not_configured"),
            (UnknownProvider(provider="nope"), 400, "unknown_provider"),
            (
                AuthorizationFailed(provider="schwab", reason="invalid_grant"),
                400,
                "authorization_failed",
            ),
            (ReauthRequired(provider="schwab"), 409, "reauth_required"),
            (ProviderUnavailable(provider="schwab", timeout=True), 504, "provider_timeout"),
            (ProviderUnavailable(provider="schwab", status=503), 503, "provider_unavailable"),
            (
                ProviderRateLimited(provider="schwab", retry_after=12.2),
                503,
                "provider_rate_limited",
            ),
            (ProviderBadResponse(provider="schwab"), 502, "provider_error"),
            (ProviderRequestRejected(provider="schwab", status=400), 502, "provider_error"),
            (AccessTokenRejected(provider="schwab"), 502, "provider_error"),
        ],
    )
    def test_each_error_has_one_status_and_code(
        self, error: ProviderError, status: int, code: str
    ) -> None:
        app_error = to_app_error(error)
        assert isinstance(app_error, AppError)
        assert (app_error.status, app_error.code) == (status, code)

    def test_rate_limit_carries_retry_after_rounded_up(self) -> None:
        app_error = to_app_error(ProviderRateLimited(provider="schwab", retry_after=12.2))
        assert app_error.headers["Retry-After"] == "13"

    def test_rate_limit_without_a_hint_still_says_when_to_come_back(self) -> None:
        app_error = to_app_error(ProviderRateLimited(provider="schwab"))
        assert int(app_error.headers["Retry-After"]) > 0

    def test_detail_does_not_echo_the_upstream_reason(self) -> None:
        error = AuthorizationFailed(provider="schwab", reason="tokenDigest=abc123")
        assert "abc123" not in to_app_error(error).detail


class TestProviderErrorRepr:
    def test_repr_shows_provider_and_reason_only(self) -> None:
        error = ReauthRequired("x", provider="schwab", reason="refresh_token_authentication_error")
        assert repr(error) == (
            "ReauthRequired(provider='schwab', reason='refresh_token_authentication_error')"
        )

    def test_unknown_provider_is_a_key_error_with_a_plain_message(self) -> None:
        error = UnknownProvider(provider="nope")
        assert isinstance(error, KeyError)
        assert str(error) == "Unknown institution."
