"""The Schwab Trader API calls: URLs, parameters, payload handling and failures."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashtam.providers.base import AccountRef, Provider
from dashtam.providers.errors import (
    AccessTokenRejected,
    ProviderBadResponse,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderUnavailable,
)
from dashtam.providers.schwab.client import TRANSACTION_TYPES, format_schwab_time
from tests.unit.providers.schwab.support import API_BASE, make_schwab
from tests.unit.providers.support import (
    RoutedTransport,
    ScriptedTransport,
    Step,
    capture,
    events,
    json_response,
    rendered_logs,
)

TOKEN = "I0.b2F1dGgyLmJkYy5zY2h3YWIuY29t.DATACALLSECRETTOKENDATACALLSECRET0123456@"
HASH_A = "3F9A1C27E4B8D05F6A2C9E13B7D4F08A5C6E2B91D3F7A04E8B5C1D26F9A3E7B0"
HASH_B = "A07E5D3C91B24F68E0D7C3A5B19F2E846D0C7B3A5E9F1D2C4B6A8E0F3D5C7B91"
NUMBERS = [
    {"accountNumber": "41827365", "hashValue": HASH_A},
    {"accountNumber": "59201846", "hashValue": HASH_B},
]


def account_body(number: str, account_type: str = "MARGIN") -> dict[str, Any]:
    return {
        "securitiesAccount": {
            "type": account_type,
            "accountNumber": number,
            "positions": [
                {
                    "longQuantity": 25.0,
                    "marketValue": 4563.75,
                    "averagePrice": 171.4025,
                    "instrument": {"assetType": "EQUITY", "symbol": "AAPL", "cusip": "037833100"},
                }
            ],
            "currentBalances": {"liquidationValue": 17337.67, "cashBalance": 3120.55},
        },
        "aggregatedBalance": {"currentLiquidationValue": 17337.67},
    }


def transaction_body(activity_id: int = 88145023391) -> dict[str, Any]:
    return {
        "activityId": activity_id,
        "time": "2025-03-14T14:31:07+0000",
        "description": "JOURNAL FRM 59201846",
        "accountNumber": "41827365",
        "type": "JOURNAL",
        "netAmount": -1902.52,
        "transferItems": [{"instrument": {"symbol": "CURRENCY_USD"}, "amount": 250.0}],
    }


def api(path: str) -> str:
    return API_BASE + path


def routes(table: dict[str, httpx.Response]) -> RoutedTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return table[request.url.path]

    return RoutedTransport(handler)


class TestProtocol:
    def test_schwab_satisfies_the_provider_protocol(self, tmp_root: Path) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([]))
        assert isinstance(provider, Provider)
        assert provider.max_rows_per_call == 3000
        assert provider.max_window == timedelta(days=365)
        assert provider.refresh_token_max_age == timedelta(days=7)


class TestAccountNumbers:
    async def test_refs_carry_hash_and_last4_only(self, tmp_root: Path) -> None:
        transport = ScriptedTransport([json_response(200, NUMBERS)])
        provider, _ = make_schwab(tmp_root, transport)
        refs = await provider.account_numbers(TOKEN)
        assert refs == [AccountRef(HASH_A, "7365"), AccountRef(HASH_B, "1846")]
        assert "41827365" not in repr(refs)
        request = transport.requests[0]
        assert str(request.url) == api("/accounts/accountNumbers")
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["Accept"] == "application/json"

    @pytest.mark.parametrize(
        "body",
        [
            {"accountNumber": "1"},
            [{"accountNumber": "1"}],
            [{"hashValue": "H"}],
            ["x"],
            [{"accountNumber": "", "hashValue": "H"}],
        ],
    )
    async def test_unexpected_shapes_are_bad_responses(self, tmp_root: Path, body: Any) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([json_response(200, body)]))
        with pytest.raises(ProviderBadResponse):
            await provider.account_numbers(TOKEN)


class TestAccounts:
    async def test_accounts_are_labelled_by_hash_without_plain_numbers(
        self, tmp_root: Path
    ) -> None:
        transport = routes(
            {
                "/trader/v1/accounts/accountNumbers": json_response(200, NUMBERS),
                "/trader/v1/accounts": json_response(
                    200, [account_body("41827365"), account_body("59201846", "CASH")]
                ),
            }
        )
        provider, _ = make_schwab(tmp_root, transport)
        accounts = await provider.accounts(TOKEN)
        assert [a["securitiesAccount"]["accountHash"] for a in accounts] == [HASH_A, HASH_B]
        assert [a["securitiesAccount"]["accountNumberLast4"] for a in accounts] == ["7365", "1846"]
        dumped = json.dumps(accounts, default=str)
        assert "41827365" not in dumped and "59201846" not in dumped
        assert transport.requests[1].url.params["fields"] == "positions"

    async def test_amounts_are_exact_decimals(self, tmp_root: Path) -> None:
        transport = routes(
            {
                "/trader/v1/accounts/accountNumbers": json_response(200, NUMBERS),
                "/trader/v1/accounts": json_response(200, [account_body("41827365")]),
            }
        )
        provider, _ = make_schwab(tmp_root, transport)
        (account,) = await provider.accounts(TOKEN)
        position = account["securitiesAccount"]["positions"][0]
        assert position["marketValue"] == Decimal("4563.75")
        assert position["averagePrice"] == Decimal("171.4025")
        assert account["securitiesAccount"]["currentBalances"]["cashBalance"] == Decimal("3120.55")

    async def test_without_positions_no_fields_parameter_is_sent(self, tmp_root: Path) -> None:
        transport = routes(
            {
                "/trader/v1/accounts/accountNumbers": json_response(200, NUMBERS),
                "/trader/v1/accounts": json_response(200, []),
            }
        )
        provider, _ = make_schwab(tmp_root, transport)
        assert await provider.accounts(TOKEN, with_positions=False) == []
        assert "fields" not in transport.requests[1].url.params

    async def test_single_account_uses_the_hash_in_the_path(self, tmp_root: Path) -> None:
        transport = ScriptedTransport([json_response(200, account_body("41827365"))])
        provider, _ = make_schwab(tmp_root, transport)
        account = await provider.account(TOKEN, HASH_A)
        assert transport.requests[0].url.path == f"/trader/v1/accounts/{HASH_A}"
        assert account["securitiesAccount"]["accountHash"] == HASH_A
        assert "accountNumber" not in account["securitiesAccount"]

    async def test_hash_cannot_change_the_route(self, tmp_root: Path) -> None:
        transport = ScriptedTransport([json_response(200, account_body("41827365"))])
        provider, _ = make_schwab(tmp_root, transport)
        await provider.account(TOKEN, "../orders?x=1")
        assert (
            transport.requests[0].url.raw_path
            == b"/trader/v1/accounts/..%2Forders%3Fx%3D1?fields=positions"
        )

    async def test_gzip_bodies_are_decoded(self, tmp_root: Path) -> None:
        raw = json.dumps(account_body("41827365")).encode()
        reply = httpx.Response(
            200,
            content=gzip.compress(raw),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
        transport = ScriptedTransport([reply])
        provider, _ = make_schwab(tmp_root, transport)
        account = await provider.account(TOKEN, HASH_A)
        assert account["securitiesAccount"]["accountNumberLast4"] == "7365"
        assert "gzip" in transport.requests[0].headers["Accept-Encoding"]


class TestTransactions:
    async def test_window_dates_types_and_path(self, tmp_root: Path) -> None:
        transport = ScriptedTransport([json_response(200, [transaction_body()])])
        provider, _ = make_schwab(tmp_root, transport)
        start = datetime(2024, 3, 28, 21, 10, 42, 123456, tzinfo=UTC)
        end = datetime(2025, 3, 28, 0, 0, tzinfo=UTC)
        rows = await provider.transactions(TOKEN, HASH_A, start, end)
        request = transport.requests[0]
        assert request.url.path == f"/trader/v1/accounts/{HASH_A}/transactions"
        assert request.url.params["startDate"] == "2024-03-28T21:10:42.123Z"
        assert request.url.params["endDate"] == "2025-03-28T00:00:00.000Z"
        assert request.url.params["types"] == ",".join(TRANSACTION_TYPES)
        assert len(TRANSACTION_TYPES) == 15
        assert rows[0]["accountHash"] == HASH_A
        assert rows[0]["description"] == "JOURNAL FRM ****1846"
        assert rows[0]["netAmount"] == Decimal("-1902.52")
        assert "41827365" not in json.dumps(rows, default=str)

    async def test_chosen_types_are_sent(self, tmp_root: Path) -> None:
        transport = ScriptedTransport([json_response(200, [])])
        provider, _ = make_schwab(tmp_root, transport)
        now = datetime.now(UTC)
        await provider.transactions(
            TOKEN, HASH_A, now - timedelta(days=1), now, types=["TRADE", "DIVIDEND_OR_INTEREST"]
        )
        assert transport.requests[0].url.params["types"] == "TRADE,DIVIDEND_OR_INTEREST"

    def test_other_zones_are_converted_to_utc(self) -> None:
        eastern = timezone(timedelta(hours=-5))
        assert format_schwab_time(datetime(2025, 1, 1, 19, 0, tzinfo=eastern)) == (
            "2025-01-02T00:00:00.000Z"
        )

    async def test_exactly_the_maximum_window_is_allowed(self, tmp_root: Path) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([json_response(200, [])]))
        end = datetime(2025, 3, 1, tzinfo=UTC)
        assert await provider.transactions(TOKEN, HASH_A, end - timedelta(days=365), end) == []

    @pytest.mark.parametrize(
        ("start", "end", "types", "message"),
        [
            (
                datetime(2024, 1, 1, tzinfo=UTC),
                datetime(2025, 1, 1, 0, 0, 1, tzinfo=UTC),
                None,
                "window",
            ),
            (datetime(2025, 1, 2, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC), None, "after"),
            (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC), None, "after"),
            (datetime(2025, 1, 1), datetime(2025, 1, 2, tzinfo=UTC), None, "naive"),
            (
                datetime(2025, 1, 1, tzinfo=UTC),
                datetime(2025, 1, 2, tzinfo=UTC),
                ["BOGUS"],
                "unknown",
            ),
        ],
    )
    async def test_invalid_windows_are_refused_before_any_call(
        self,
        tmp_root: Path,
        start: datetime,
        end: datetime,
        types: list[str] | None,
        message: str,
    ) -> None:
        transport = ScriptedTransport([])
        provider, _ = make_schwab(tmp_root, transport)
        with pytest.raises(ValueError, match=message):
            await provider.transactions(TOKEN, HASH_A, start, end, types=types)
        assert transport.requests == []

    @pytest.mark.parametrize("body", [[transaction_body()], transaction_body()])
    async def test_single_transaction_accepts_array_or_object(
        self, tmp_root: Path, body: Any
    ) -> None:
        transport = ScriptedTransport([json_response(200, body)])
        provider, _ = make_schwab(tmp_root, transport)
        row = await provider.transaction(TOKEN, HASH_A, 88145023391)
        assert row["activityId"] == 88145023391
        assert row["accountHash"] == HASH_A
        assert transport.requests[0].url.path.endswith(f"/{HASH_A}/transactions/88145023391")

    async def test_empty_array_means_not_found(self, tmp_root: Path) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([json_response(200, [])]))
        with pytest.raises(ProviderRequestRejected) as caught:
            await provider.transaction(TOKEN, HASH_A, "1")
        assert caught.value.reason == "not_found"

    async def test_non_numeric_ids_are_refused(self, tmp_root: Path) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([]))
        with pytest.raises(ValueError, match="numeric"):
            await provider.transaction(TOKEN, HASH_A, "1/../../x")


class TestUserPreference:
    @pytest.mark.parametrize("wrap", [False, True])
    async def test_object_or_array_and_numbers_removed(self, tmp_root: Path, wrap: bool) -> None:
        prefs = {
            "accounts": [
                {"accountNumber": "41827365", "nickName": "Individual", "displayAcctId": "...365"}
            ],
            "streamerInfo": [{"schwabClientChannel": "N9"}],
        }
        transport = ScriptedTransport([json_response(200, [prefs] if wrap else prefs)])
        provider, _ = make_schwab(tmp_root, transport)
        result = await provider.user_preference(TOKEN)
        assert transport.requests[0].url.path == "/trader/v1/userPreference"
        assert result["accounts"][0] == {
            "accountNumberLast4": "7365",
            "nickName": "Individual",
            "displayAcctId": "...365",
        }


class TestDataCallFailures:
    async def test_401_is_access_token_rejected_without_retry(self, tmp_root: Path) -> None:
        body = {
            "errors": [
                {
                    "id": "x",
                    "status": 401,
                    "title": "Unauthorized",
                    "detail": "Client not authorized",
                }
            ]
        }
        transport = ScriptedTransport([json_response(401, body)])
        provider, sleeps = make_schwab(tmp_root, transport)
        with pytest.raises(AccessTokenRejected):
            await provider.account_numbers(TOKEN)
        assert len(transport.requests) == 1 and sleeps.delays == []

    @pytest.mark.parametrize(
        ("status", "reason"), [(400, "http_400"), (404, "not_found"), (403, "http_403")]
    )
    async def test_refusals_are_request_rejected_without_retry(
        self, tmp_root: Path, status: int, reason: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        capture(caplog)
        transport = ScriptedTransport(
            [json_response(status, {"message": "Invalid account number"})]
        )
        provider, _ = make_schwab(tmp_root, transport)
        with pytest.raises(ProviderRequestRejected) as caught:
            await provider.account(TOKEN, "41827365")
        assert (caught.value.status, caught.value.reason) == (status, reason)
        assert len(transport.requests) == 1
        (failed,) = events(caplog, "provider.call.failed")
        assert failed["upstream_message"] == "Invalid account number"
        assert failed["correl_id"] == "c0ffee00-0000-4000-8000-000000000001"

    @pytest.mark.parametrize(
        "steps",
        [
            [500, 503, json_response(200, NUMBERS)],
            [httpx.ConnectError, httpx.ReadTimeout, json_response(200, NUMBERS)],
            [
                httpx.Response(404, text="Requested route ('x.schwab.com') does not exist."),
                json_response(200, NUMBERS),
            ],
            [httpx.Response(403, html="<html>Access Denied</html>"), json_response(200, NUMBERS)],
        ],
    )
    async def test_transient_failures_are_retried(self, tmp_root: Path, steps: list[Step]) -> None:
        transport = ScriptedTransport(steps)
        provider, _ = make_schwab(tmp_root, transport)
        assert len(await provider.account_numbers(TOKEN)) == 2
        assert len(transport.requests) == len(steps)

    @pytest.mark.parametrize(
        ("steps", "timeout", "status"),
        [
            ([500, 500, 503, 503], False, 503),
            ([httpx.ConnectError] * 4, False, None),
            ([httpx.ReadTimeout] * 4, True, None),
            (
                [httpx.ReadError, httpx.ReadError, httpx.ConnectTimeout, httpx.ReadTimeout],
                True,
                None,
            ),
        ],
    )
    async def test_persistent_outage_is_unavailable_after_four_attempts(
        self, tmp_root: Path, steps: list[Step], timeout: bool, status: int | None
    ) -> None:
        transport = ScriptedTransport(steps)
        provider, sleeps = make_schwab(tmp_root, transport)
        with pytest.raises(ProviderUnavailable) as caught:
            await provider.account_numbers(TOKEN)
        assert (caught.value.timeout, caught.value.status) == (timeout, status)
        assert len(transport.requests) == 4
        assert len(sleeps.delays) == 3

    async def test_429_is_waited_out_then_reported(self, tmp_root: Path) -> None:
        limited = json_response(429, {"message": "slow down"}, headers={"Retry-After": "2"})
        transport = ScriptedTransport([limited] * 4)
        provider, sleeps = make_schwab(tmp_root, transport)
        with pytest.raises(ProviderRateLimited) as caught:
            await provider.account_numbers(TOKEN)
        assert sleeps.delays == [2.0, 2.0, 2.0]
        assert caught.value.retry_after == 2.0

    @pytest.mark.parametrize(
        "reply",
        [
            httpx.Response(200, text="<html>maintenance</html>"),
            httpx.Response(200),
            httpx.Response(200, content=b'[{"accountNumber": "1", '),
        ],
    )
    async def test_malformed_success_is_a_bad_response(
        self, tmp_root: Path, reply: httpx.Response
    ) -> None:
        provider, _ = make_schwab(tmp_root, ScriptedTransport([reply]))
        with pytest.raises(ProviderBadResponse):
            await provider.account_numbers(TOKEN)

    async def test_exhausted_request_budget_is_rate_limited(self, tmp_root: Path) -> None:
        transport = ScriptedTransport([json_response(200, NUMBERS)])
        provider, _ = make_schwab(
            tmp_root, transport, schwab_requests_per_minute=1, provider_budget_max_wait=0.0
        )
        await provider.account_numbers(TOKEN)
        with pytest.raises(ProviderRateLimited) as caught:
            await provider.account_numbers(TOKEN)
        assert caught.value.reason == "request_budget"
        assert len(transport.requests) == 1

    async def test_access_token_never_reaches_the_logs(
        self, tmp_root: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        capture(caplog)
        transport = ScriptedTransport([500, json_response(401, {"message": "nope"})])
        provider, _ = make_schwab(tmp_root, transport)
        with pytest.raises(AccessTokenRejected):
            await provider.account_numbers(TOKEN)
        text = rendered_logs(caplog)
        assert "DATACALLSECRET" not in text
        assert "/trader/v1/accounts/accountNumbers" in text
