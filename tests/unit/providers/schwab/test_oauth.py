"""Schwab OAuth: the authorize URL, the code exchange and the refresh, with every error shape."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from dashtam.core.types import utcnow
from dashtam.providers.base import Capability
from dashtam.providers.errors import (
    AuthorizationFailed,
    ProviderBadResponse,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderUnavailable,
    ReauthRequired,
)
from tests.unit.providers.schwab.support import (
    APP_KEY,
    APP_SECRET,
    AUTH_BASE,
    REDIRECT_URI,
    make_schwab,
)
from tests.unit.providers.support import (
    ScriptedTransport,
    Step,
    capture,
    json_response,
    rendered_logs,
)

CODE_FROM_CALLBACK = (
    "C0.b2F1dGgyLmJkYy5zY2h3YWIuY29t.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde%40"
)
CODE_DECODED = "C0.b2F1dGgyLmJkYy5zY2h3YWIuY29t.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde@"
ACCESS = "I0.b2F1dGgyLmJkYy5zY2h3YWIuY29t.ACCESSSECRETACCESSSECRETACCESSSECRET12345@"
REFRESH = "REFRESHSECRET-REFRESHSECRET-REFRESHSECRET@"
ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyMTIzIn0.c2lnbmF0dXJlc2lnbmF0dXJl"

NESTED_DEAD_REFRESH = {
    "error": "unsupported_token_type",
    "error_description": (
        '400 Bad Request: "{"error_description":"Exception while authenticating refresh token '
        "[tokenDigest=DIGESTSECRET=, Exception=Failed refresh token authentication "
        '[tokenDigest=DIGESTSECRET=]]","error":"refresh_token_authentication_error"}"'
    ),
}
EDGE_403 = httpx.Response(
    403,
    headers={"Content-Type": "text/html"},
    text="<HTML><HEAD><TITLE>Access Denied</TITLE></HEAD><BODY>You don't have permission to "
    'access "http://api.schwabapi.com/v1/oauth/token" on this server.</BODY></HTML>',
)


def token_reply(*, refresh: str | None = REFRESH, expires_in: int = 1800) -> httpx.Response:
    body: dict[str, object] = {
        "expires_in": expires_in,
        "token_type": "Bearer",
        "scope": "api",
        "access_token": ACCESS,
        "id_token": ID_TOKEN,
    }
    if refresh is not None:
        body["refresh_token"] = refresh
    return json_response(200, body)


def form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode(), keep_blank_values=True)


class TestAuthorizationUrl:
    def test_carries_client_redirect_response_type_and_state(self, tmp_root: Path) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([]))
        url = provider.authorization_url(state="abc.123_state")
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == AUTH_BASE + "/authorize"
        assert parse_qs(parts.query) == {
            "client_id": [APP_KEY],
            "redirect_uri": [REDIRECT_URI],
            "response_type": ["code"],
            "state": ["abc.123_state"],
        }

    def test_redirect_uri_is_percent_encoded_exactly(self, tmp_root: Path) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([]))
        assert "redirect_uri=https%3A%2F%2F127.0.0.1%3A8182&" in provider.authorization_url(
            state="s"
        )

    def test_pkce_is_not_advertised_and_a_challenge_is_refused(self, tmp_root: Path) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([]))
        assert Capability.PKCE not in provider.capabilities
        with pytest.raises(ValueError, match="PKCE"):
            provider.authorization_url(state="s", code_challenge="x" * 43)

    def test_empty_state_is_refused(self, tmp_root: Path) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([]))
        with pytest.raises(ValueError, match="state"):
            provider.authorization_url(state="")

    @pytest.mark.parametrize(
        "overrides",
        [{"schwab_app_key": None}, {"schwab_app_secret": None}, {"schwab_app_key": "   "}],
    )
    async def test_unconfigured_provider_refuses_every_oauth_step(
        self, tmp_root: Path, overrides: dict[str, object]
    ) -> None:
        transport = ScriptedTransport([])
        provider, _ = make_schwab(tmp_root, transport, **overrides)
        assert provider.is_configured is False
        with pytest.raises(ProviderNotConfigured):
            provider.authorization_url(state="s")
        with pytest.raises(ProviderNotConfigured):
            await provider.exchange_code(CODE_FROM_CALLBACK)
        with pytest.raises(ProviderNotConfigured):
            await provider.refresh(REFRESH)
        assert transport.requests == []


class TestExchangeCode:
    async def test_posts_form_with_basic_client_auth_and_decoded_code(self, tmp_root: Path) -> None:
        transport = ScriptedTransport([token_reply()])
        provider, _ = make_schwab(tmp_root, transport)
        await provider.exchange_code(CODE_FROM_CALLBACK)
        (request,) = transport.requests
        assert request.method == "POST"
        assert str(request.url) == AUTH_BASE + "/token"
        expected = base64.b64encode(f"{APP_KEY}:{APP_SECRET}".encode()).decode()
        assert request.headers["Authorization"] == f"Basic {expected}"
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert form(request) == {
            "grant_type": ["authorization_code"],
            "code": [CODE_DECODED],
            "redirect_uri": [REDIRECT_URI],
        }
        # The "@" travels form-encoded once, never double-encoded as %2540.
        assert b"%2540" not in request.content and b"abcde%40" in request.content

    async def test_already_decoded_code_is_sent_the_same(self, tmp_root: Path) -> None:
        transport = ScriptedTransport([token_reply()])
        provider, _ = make_schwab(tmp_root, transport)
        await provider.exchange_code(CODE_DECODED)
        assert form(transport.requests[0])["code"] == [CODE_DECODED]

    async def test_reply_becomes_a_token_set(self, tmp_root: Path) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([token_reply()]))
        before = utcnow()
        tokens = await provider.exchange_code(CODE_FROM_CALLBACK)
        after = utcnow()
        assert tokens.access_token == ACCESS
        assert tokens.refresh_token == REFRESH
        assert tokens.id_token == ID_TOKEN
        assert (tokens.token_type, tokens.scope, tokens.expires_in) == ("Bearer", "api", 1800)
        assert tokens.access_expires_at is not None
        assert before + timedelta(seconds=1800) <= tokens.access_expires_at
        assert tokens.access_expires_at <= after + timedelta(seconds=1800)

    @pytest.mark.parametrize(
        ("reply", "reason", "misconfigured"),
        [
            (
                json_response(400, {"error": "invalid_grant", "error_description": "used"}),
                "invalid_grant",
                False,
            ),
            (json_response(400, {"error": "access_denied"}), "access_denied", False),
            (
                json_response(
                    401, {"error": "invalid_client", "error_description": "Unauthorized"}
                ),
                "invalid_client",
                True,
            ),
            (httpx.Response(400), "http_400", False),
            (httpx.Response(400, text="Bad redirect_uri"), "http_400", False),
        ],
    )
    async def test_refusals_are_authorization_failures_sent_once(
        self, tmp_root: Path, reply: httpx.Response, reason: str, misconfigured: bool
    ) -> None:
        transport = ScriptedTransport([reply])
        provider, _ = make_schwab(tmp_root, transport)
        with pytest.raises(AuthorizationFailed) as caught:
            await provider.exchange_code(CODE_FROM_CALLBACK)
        assert caught.value.reason == reason
        assert caught.value.client_misconfigured is misconfigured
        assert len(transport.requests) == 1

    @pytest.mark.parametrize(
        ("steps", "error", "timeout"),
        [
            ([500], ProviderUnavailable, False),
            ([503], ProviderUnavailable, False),
            ([EDGE_403], ProviderUnavailable, False),
            ([httpx.ReadTimeout], ProviderUnavailable, True),
            ([httpx.RemoteProtocolError], ProviderUnavailable, False),
            ([json_response(429, {}, headers={"Retry-After": "5"})], ProviderRateLimited, None),
        ],
    )
    async def test_possibly_consumed_code_is_never_retried(
        self,
        tmp_root: Path,
        steps: list[Step],
        error: type[Exception],
        timeout: bool | None,
    ) -> None:
        transport = ScriptedTransport([*steps, token_reply()])
        provider, sleeps = make_schwab(tmp_root, transport)
        with pytest.raises(error) as caught:
            await provider.exchange_code(CODE_FROM_CALLBACK)
        assert len(transport.requests) == 1
        assert sleeps.delays == []
        if timeout is not None:
            assert isinstance(caught.value, ProviderUnavailable)
            assert caught.value.timeout is timeout

    async def test_connect_failure_is_retried_because_nothing_was_sent(
        self, tmp_root: Path
    ) -> None:
        transport = ScriptedTransport([httpx.ConnectError, httpx.ConnectTimeout, token_reply()])
        provider, sleeps = make_schwab(tmp_root, transport)
        tokens = await provider.exchange_code(CODE_FROM_CALLBACK)
        assert tokens.access_token == ACCESS
        assert len(transport.requests) == 3
        assert sleeps.delays == [0.25, 0.5]

    async def test_rate_limit_reports_retry_after(self, tmp_root: Path) -> None:
        reply = json_response(429, {}, headers={"Retry-After": "7"})
        provider, _ = make_schwab(tmp_root, ScriptedTransport([reply]))
        with pytest.raises(ProviderRateLimited) as caught:
            await provider.exchange_code(CODE_FROM_CALLBACK)
        assert caught.value.retry_after == 7.0

    async def test_verifier_is_refused_without_pkce(self, tmp_root: Path) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([]))
        with pytest.raises(ValueError, match="PKCE"):
            await provider.exchange_code(CODE_FROM_CALLBACK, code_verifier="v" * 43)


class TestRefresh:
    async def test_posts_refresh_grant_with_basic_auth(self, tmp_root: Path) -> None:
        transport = ScriptedTransport([token_reply()])
        provider, _ = make_schwab(tmp_root, transport)
        await provider.refresh(REFRESH)
        (request,) = transport.requests
        assert form(request) == {"grant_type": ["refresh_token"], "refresh_token": [REFRESH]}
        assert request.headers["Authorization"].startswith("Basic ")

    async def test_same_refresh_token_returned_is_kept(self, tmp_root: Path) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([token_reply(refresh=REFRESH)]))
        tokens = await provider.refresh(REFRESH)
        assert tokens.refresh_token == REFRESH

    async def test_rotated_refresh_token_is_returned(self, tmp_root: Path) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([token_reply(refresh="NEW-ONE")]))
        assert (await provider.refresh(REFRESH)).refresh_token == "NEW-ONE"

    async def test_omitted_refresh_token_is_none(self, tmp_root: Path) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([token_reply(refresh=None)]))
        tokens = await provider.refresh(REFRESH)
        assert tokens.refresh_token is None
        assert tokens.access_token == ACCESS

    @pytest.mark.parametrize(
        ("reply", "reason"),
        [
            (json_response(400, NESTED_DEAD_REFRESH), "refresh_token_authentication_error"),
            (
                json_response(
                    401, {"error": "invalid_client", "error_description": "refresh token invalid"}
                ),
                "invalid_client",
            ),
            (json_response(400, {"error": "invalid_grant"}), "invalid_grant"),
            (httpx.Response(400), "http_400"),
            (httpx.Response(401, text="Unauthorized"), "http_401"),
        ],
    )
    async def test_dead_refresh_tokens_require_reauth_without_retry(
        self, tmp_root: Path, reply: httpx.Response, reason: str
    ) -> None:
        transport = ScriptedTransport([reply])
        provider, sleeps = make_schwab(tmp_root, transport)
        with pytest.raises(ReauthRequired) as caught:
            await provider.refresh(REFRESH)
        assert caught.value.reason == reason
        assert len(transport.requests) == 1
        assert sleeps.delays == []

    async def test_edge_block_is_transient_and_retried(self, tmp_root: Path) -> None:
        transport = ScriptedTransport([EDGE_403, token_reply()])
        provider, sleeps = make_schwab(tmp_root, transport)
        tokens = await provider.refresh(REFRESH)
        assert tokens.access_token == ACCESS
        assert len(sleeps.delays) == 1

    async def test_persistent_5xx_becomes_unavailable_after_bounded_retries(
        self, tmp_root: Path
    ) -> None:
        transport = ScriptedTransport([503, 500, 502, 503])
        provider, sleeps = make_schwab(tmp_root, transport)
        with pytest.raises(ProviderUnavailable) as caught:
            await provider.refresh(REFRESH)
        assert caught.value.status == 503
        assert caught.value.timeout is False
        assert len(transport.requests) == 4
        assert sleeps.delays == [0.25, 0.5, 1.0]

    async def test_persistent_edge_block_is_unavailable_not_reauth(self, tmp_root: Path) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([EDGE_403] * 4))
        with pytest.raises(ProviderUnavailable) as caught:
            await provider.refresh(REFRESH)
        assert caught.value.reason == "edge_block"

    async def test_persistent_timeouts_become_a_timeout(self, tmp_root: Path) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([httpx.ReadTimeout] * 4))
        with pytest.raises(ProviderUnavailable) as caught:
            await provider.refresh(REFRESH)
        assert caught.value.timeout is True

    @pytest.mark.parametrize(
        "reply",
        [
            httpx.Response(200, text="not json"),
            httpx.Response(200),
            json_response(200, ["a", "list"]),
            json_response(200, {"token_type": "Bearer", "expires_in": 1800}),
            json_response(200, {"access_token": ACCESS, "expires_in": "soon"}),
            json_response(200, {"access_token": 12345}),
        ],
    )
    async def test_unreadable_success_is_a_bad_response(
        self, tmp_root: Path, reply: httpx.Response
    ) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([reply]))
        with pytest.raises(ProviderBadResponse):
            await provider.refresh(REFRESH)


class TestOAuthLogging:
    async def test_no_secret_reaches_the_logs(
        self, tmp_root: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        capture(caplog)
        transport = ScriptedTransport(
            [
                token_reply(),
                json_response(400, NESTED_DEAD_REFRESH),
                json_response(400, {"error": "invalid_grant", "error_description": CODE_DECODED}),
            ]
        )
        provider, _ = make_schwab(tmp_root, transport)
        tokens = await provider.exchange_code(CODE_FROM_CALLBACK)
        with pytest.raises(ReauthRequired):
            await provider.refresh(tokens.refresh_token or "")
        with pytest.raises(AuthorizationFailed):
            await provider.exchange_code(CODE_FROM_CALLBACK)
        text = rendered_logs(caplog)
        assert "provider.http.request" in text and "provider.token.failed" in text
        for secret in (
            APP_SECRET,
            ACCESS,
            REFRESH,
            ID_TOKEN,
            "AbCdEfGhIjKl",
            "DIGESTSECRET",
            base64.b64encode(f"{APP_KEY}:{APP_SECRET}".encode()).decode(),
        ):
            assert secret not in text
        failed = [json.loads(line) for line in text.splitlines() if "provider.token.failed" in line]
        assert [f["reason"] for f in failed] == [
            "refresh_token_authentication_error",
            "invalid_grant",
        ]
        assert failed[0]["correl_id"] == "c0ffee00-0000-4000-8000-000000000001"

    def test_provider_repr_hides_credentials(self, tmp_root: Path) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([]))
        assert APP_SECRET not in repr(provider) and APP_KEY not in repr(provider)


class TestTokenCallsAndTheBudget:
    async def test_token_calls_never_wait_for_the_request_budget(self, tmp_root: Path) -> None:
        transport = ScriptedTransport([token_reply(), token_reply(), token_reply()])
        provider, _ = make_schwab(
            tmp_root, transport, schwab_requests_per_minute=1, provider_budget_max_wait=0.0
        )
        await provider.exchange_code(CODE_FROM_CALLBACK)
        await provider.refresh(REFRESH)
        await provider.refresh(REFRESH)
        assert len(transport.requests) == 3
