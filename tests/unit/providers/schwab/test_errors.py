"""Reading every observed Schwab error shape into codes and typed errors."""

from __future__ import annotations

import httpx
import pytest

from dashtam.providers.errors import (
    AccessTokenRejected,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderUnavailable,
)
from dashtam.providers.schwab.errors import (
    api_error_message,
    data_failure,
    is_transient,
    parse_token_error,
)

NESTED = {
    "error": "unsupported_token_type",
    "error_description": '400 Bad Request: "{"error_description":"Exception while '
    'authenticating refresh token [tokenDigest=abc=]",'
    '"error":"refresh_token_authentication_error"}"',
}
NESTED_ESCAPED = {
    "error": "unsupported_token_type",
    "error_description": '400 Bad Request: "{\\"error_description\\":\\"x\\",'
    '\\"error\\":\\"refresh_token_authentication_error\\"}"',
}
HTML_403 = httpx.Response(
    403, headers={"Content-Type": "text/html"}, text="<HTML><HEAD><TITLE>Access Denied</TITLE>"
)
ROUTE_404 = httpx.Response(
    404,
    headers={"Content-Type": "text/plain"},
    text="Requested route ('traderapi-accounts.apigx-origin.schwab.com') does not exist.",
)


class TestParseTokenError:
    def test_nested_json_in_description_gives_the_inner_code(self) -> None:
        info = parse_token_error(httpx.Response(400, json=NESTED))
        assert info.error == "unsupported_token_type"
        assert info.inner_error == "refresh_token_authentication_error"
        assert info.reason == "refresh_token_authentication_error"

    def test_nested_json_with_escaped_quotes_is_read_too(self) -> None:
        info = parse_token_error(httpx.Response(400, json=NESTED_ESCAPED))
        assert info.inner_error == "refresh_token_authentication_error"

    def test_plain_oauth_error(self) -> None:
        info = parse_token_error(httpx.Response(400, json={"error": "invalid_grant"}))
        assert (info.error, info.inner_error, info.reason) == (
            "invalid_grant",
            None,
            "invalid_grant",
        )

    def test_description_without_json_keeps_the_outer_code(self) -> None:
        body = {"error": "invalid_client", "error_description": "refresh token invalid"}
        info = parse_token_error(httpx.Response(401, json=body))
        assert info.reason == "invalid_client"

    @pytest.mark.parametrize(
        "response",
        [httpx.Response(400), httpx.Response(400, text="nope"), httpx.Response(400, json=[1])],
    )
    def test_unreadable_bodies_fall_back_to_the_status(self, response: httpx.Response) -> None:
        assert parse_token_error(response).reason == "http_400"

    def test_html_page_is_flagged(self) -> None:
        assert parse_token_error(HTML_403).html is True


class TestIsTransient:
    @pytest.mark.parametrize(
        "response",
        [
            httpx.Response(500),
            httpx.Response(503),
            httpx.Response(429),
            HTML_403,
            ROUTE_404,
            httpx.Response(403, text="<!DOCTYPE html><html>denied</html>"),
        ],
    )
    def test_outages_and_edge_glitches_are_transient(self, response: httpx.Response) -> None:
        assert is_transient(response) is True

    @pytest.mark.parametrize(
        "response",
        [
            httpx.Response(400, json={"message": "Invalid account number"}),
            httpx.Response(401, json={"errors": [{"status": 401, "title": "Unauthorized"}]}),
            httpx.Response(403, json={"message": "forbidden"}),
            httpx.Response(404, json={"message": "Requested route missing"}),
            httpx.Response(404),
        ],
    )
    def test_real_answers_are_not(self, response: httpx.Response) -> None:
        assert is_transient(response) is False


class TestApiErrorMessage:
    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"message": "Invalid account number"}, "Invalid account number"),
            ({"message": "bad", "errors": ["startDate missing"]}, "bad"),
            (
                {
                    "errors": [
                        {
                            "id": "1",
                            "status": "400",
                            "title": "Bad Request",
                            "detail": "Missing header",
                        }
                    ]
                },
                "Missing header",
            ),
            ({"errors": [{"id": "1", "status": 401, "title": "Unauthorized"}]}, "Unauthorized"),
            ({"errors": ["plain text error"]}, "plain text error"),
            (
                {
                    "fault": {
                        "faultstring": "Body buffer overflow",
                        "detail": {"errorcode": "protocol.http.TooBigBody"},
                    }
                },
                "Body buffer overflow",
            ),
            ({"unexpected": True}, None),
        ],
    )
    def test_every_json_shape(self, body: object, message: str | None) -> None:
        assert api_error_message(httpx.Response(400, json=body)) == message

    @pytest.mark.parametrize("response", [httpx.Response(500), httpx.Response(502, text="<html>")])
    def test_empty_and_non_json_bodies(self, response: httpx.Response) -> None:
        assert api_error_message(response) is None

    def test_long_messages_are_truncated(self) -> None:
        message = api_error_message(httpx.Response(400, json={"message": "x" * 5000}))
        assert message is not None and len(message) == 200


class TestDataFailure:
    @pytest.mark.parametrize(
        ("response", "error", "reason"),
        [
            (
                httpx.Response(
                    401, json={"errors": [{"status": 401, "detail": "Client not authorized"}]}
                ),
                AccessTokenRejected,
                "http_401",
            ),
            (httpx.Response(401), AccessTokenRejected, "http_401"),
            (httpx.Response(429), ProviderRateLimited, "http_429"),
            (httpx.Response(500), ProviderUnavailable, "http_500"),
            (httpx.Response(503, json={"message": "down"}), ProviderUnavailable, "http_503"),
            (HTML_403, ProviderUnavailable, "edge_block"),
            (ROUTE_404, ProviderUnavailable, "http_404"),
            (
                httpx.Response(400, json={"message": "Invalid account number"}),
                ProviderRequestRejected,
                "http_400",
            ),
            (
                httpx.Response(404, json={"message": "Invalid account number"}),
                ProviderRequestRejected,
                "not_found",
            ),
            (httpx.Response(403, json={"message": "no"}), ProviderRequestRejected, "http_403"),
        ],
    )
    def test_status_and_shape_pick_the_error(
        self, response: httpx.Response, error: type[ProviderError], reason: str
    ) -> None:
        failure = data_failure(response)
        assert type(failure) is error
        assert failure.reason == reason
        assert failure.provider == "schwab"

    def test_rate_limit_reads_retry_after(self) -> None:
        failure = data_failure(httpx.Response(429, headers={"Retry-After": "12"}))
        assert isinstance(failure, ProviderRateLimited)
        assert failure.retry_after == 12.0
