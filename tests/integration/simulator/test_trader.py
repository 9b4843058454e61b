"""The Trader API over HTTP: accounts, transactions and their limits, preferences, auth, limits."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from tests.support.simulator import (
    ALL_TYPES,
    START_TIME,
    bearer,
    login_tokens,
    simulator_client,
)

CORREL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def hashes(sim: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    response = await sim.get("/trader/v1/accounts/accountNumbers", headers=headers)
    assert response.status_code == 200
    return [row["hashValue"] for row in response.json()]


async def transactions(
    sim: httpx.AsyncClient,
    headers: dict[str, str],
    account_hash: str,
    start: datetime,
    end: datetime,
    **extra: str,
) -> httpx.Response:
    params = {"startDate": iso(start), "endDate": iso(end), "types": ALL_TYPES, **extra}
    return await sim.get(
        f"/trader/v1/accounts/{account_hash}/transactions", params=params, headers=headers
    )


async def all_rows(
    sim: httpx.AsyncClient, headers: dict[str, str], account_hash: str, now: datetime
) -> list[dict[str, Any]]:
    """Every row of an account in yearly windows back three years (as a sync would)."""
    rows: list[dict[str, Any]] = []
    end = now
    for _ in range(3):
        start = end - timedelta(days=365)
        response = await transactions(sim, headers, account_hash, start, end)
        assert response.status_code == 200
        page = response.json()
        assert len(page) < 3000
        rows.extend(page)
        end = start - timedelta(seconds=1)
    return rows


class TestAccounts:
    async def test_account_numbers_and_accounts_with_and_without_positions(
        self, tmp_path: Path
    ) -> None:
        async with simulator_client(tmp_path) as sim:
            headers = bearer(await login_tokens(sim))
            numbers = (await sim.get("/trader/v1/accounts/accountNumbers", headers=headers)).json()
            assert [set(row) for row in numbers] == [{"accountNumber", "hashValue"}] * 2
            plain = await sim.get("/trader/v1/accounts", headers=headers)
            assert [a["securitiesAccount"]["type"] for a in plain.json()] == ["MARGIN", "CASH"]
            assert all("positions" not in a["securitiesAccount"] for a in plain.json())
            full = await sim.get(
                "/trader/v1/accounts", params={"fields": "positions"}, headers=headers
            )
            assert all(a["securitiesAccount"]["positions"] for a in full.json())
            one = await sim.get(
                f"/trader/v1/accounts/{numbers[1]['hashValue']}",
                params={"fields": "positions"},
                headers=headers,
            )
            assert one.json()["securitiesAccount"]["accountNumber"] == numbers[1]["accountNumber"]
            bad = await sim.get("/trader/v1/accounts", params={"fields": "orders"}, headers=headers)
            assert bad.status_code == 400

    async def test_plain_numbers_and_other_users_hashes_never_work(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            demo = bearer(await login_tokens(sim))
            whale = bearer(await login_tokens(sim, "whale"))
            numbers = (await sim.get("/trader/v1/accounts/accountNumbers", headers=demo)).json()
            whale_hash = (await hashes(sim, whale))[0]
            for path in (numbers[0]["accountNumber"], whale_hash, numbers[0]["hashValue"].lower()):
                response = await sim.get(f"/trader/v1/accounts/{path}", headers=demo)
                assert response.status_code == 400
                assert response.json()["message"] == "Invalid account number"

    async def test_empty_user_has_no_accounts(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            headers = bearer(await login_tokens(sim, "empty"))
            assert (await sim.get("/trader/v1/accounts", headers=headers)).json() == []
            assert (
                await sim.get("/trader/v1/accounts/accountNumbers", headers=headers)
            ).json() == []

    async def test_user_preference_is_a_single_object(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            headers = bearer(await login_tokens(sim))
            body = (await sim.get("/trader/v1/userPreference", headers=headers)).json()
            assert isinstance(body, dict)
            assert [a["displayAcctId"][:3] for a in body["accounts"]] == ["...", "..."]
            assert body["streamerInfo"][0]["schwabClientFunctionId"] == "APIAPP"


class TestTransactions:
    async def test_lists_newest_first_with_required_fields(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            headers = bearer(await login_tokens(sim))
            account = (await hashes(sim, headers))[0]
            response = await transactions(
                sim, headers, account, START_TIME - timedelta(days=90), START_TIME
            )
            assert response.status_code == 200
            rows = response.json()
            assert rows
            assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)
            for row in rows:
                assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000", row["time"])
                assert {"activityId", "type", "status", "netAmount", "transferItems"} <= set(row)

    async def test_types_and_symbol_filters(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            headers = bearer(await login_tokens(sim))
            account = (await hashes(sim, headers))[0]
            window = (START_TIME - timedelta(days=300), START_TIME)
            trades = (await transactions(sim, headers, account, *window, types="TRADE")).json()
            assert trades and {r["type"] for r in trades} == {"TRADE"}
            both = (
                await transactions(sim, headers, account, *window, types="TRADE,JOURNAL")
            ).json()
            assert {r["type"] for r in both} == {"TRADE", "JOURNAL"}
            aapl = (await transactions(sim, headers, account, *window, symbol="AAPL")).json()
            assert aapl
            assert all(
                any(i["instrument"]["symbol"] == "AAPL" for i in r["transferItems"]) for r in aapl
            )

    async def test_parameter_validation(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            headers = bearer(await login_tokens(sim))
            account = (await hashes(sim, headers))[0]
            url = f"/trader/v1/accounts/{account}/transactions"
            good = {
                "startDate": "2025-01-01T00:00:00.000Z",
                "endDate": "2025-06-01T00:00:00Z",
                "types": "TRADE",
            }
            cases = [
                ({k: v for k, v in good.items() if k != "startDate"}, "startDate is required"),
                ({k: v for k, v in good.items() if k != "endDate"}, "endDate is required"),
                ({k: v for k, v in good.items() if k != "types"}, "types is required"),
                ({**good, "startDate": "2025-01-01"}, "not a valid value for startDate"),
                (
                    {**good, "startDate": "2024-10-08T16:30:31.469502+00Z"},
                    "not a valid value for startDate",
                ),
                ({**good, "endDate": "2025-13-01T00:00:00Z"}, "not a valid value for endDate"),
                ({**good, "types": "TRADE,BOGUS"}, "'BOGUS' is not a valid value for types"),
                ({**good, "endDate": "2024-12-31T00:00:00Z"}, "must not be before"),
            ]
            for params, message in cases:
                response = await sim.get(url, params=params, headers=headers)
                assert response.status_code == 400, params
                body = response.json()
                assert message in body["message"], body
                assert body["errors"] == [body["message"]]
            assert (await sim.get(url, params=good, headers=headers)).status_code == 200

    async def test_window_longer_than_a_year_is_refused(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            headers = bearer(await login_tokens(sim))
            account = (await hashes(sim, headers))[0]
            start = datetime(2024, 6, 1, tzinfo=UTC)
            exactly = await transactions(
                sim, headers, account, start, datetime(2025, 6, 1, tzinfo=UTC)
            )
            assert exactly.status_code == 200
            over = await transactions(
                sim, headers, account, start, datetime(2025, 6, 1, 0, 0, 1, tzinfo=UTC)
            )
            assert over.status_code == 400
            assert "1 year" in over.json()["message"]

    async def test_whale_year_is_capped_at_3000_newest_rows(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            headers = bearer(await login_tokens(sim, "whale"))
            account = (await hashes(sim, headers))[0]
            year = await transactions(
                sim, headers, account, START_TIME - timedelta(days=365), START_TIME
            )
            rows = year.json()
            assert len(rows) == 3000
            oldest = rows[-1]["time"]
            # The cut is by age: a narrower window ending at the same instant agrees exactly.
            cut = datetime.strptime(oldest, "%Y-%m-%dT%H:%M:%S%z")
            narrow = (await transactions(sim, headers, account, cut, START_TIME)).json()
            assert [r["activityId"] for r in narrow] == [r["activityId"] for r in rows][
                : len(narrow)
            ]
            older = (
                await transactions(
                    sim, headers, account, cut - timedelta(days=30), cut - timedelta(seconds=1)
                )
            ).json()
            assert older and all(r["time"] < oldest for r in older)

    async def test_single_transaction_as_array_or_object(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            headers = bearer(await login_tokens(sim))
            account = (await hashes(sim, headers))[0]
            row = (
                await transactions(
                    sim, headers, account, START_TIME - timedelta(days=30), START_TIME
                )
            ).json()[3]
            url = f"/trader/v1/accounts/{account}/transactions/{row['activityId']}"
            as_array = await sim.get(url, headers=headers)
            assert as_array.json() == [row]
            await sim.put("/control/options", json={"transaction_detail_shape": "object"})
            assert (await sim.get(url, headers=headers)).json() == row
            missing = await sim.get(
                f"/trader/v1/accounts/{account}/transactions/1", headers=headers
            )
            assert missing.status_code == 404
            junk = await sim.get(f"/trader/v1/accounts/{account}/transactions/abc", headers=headers)
            assert junk.status_code == 400

    async def test_money_is_written_with_at_most_four_decimals(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            headers = bearer(await login_tokens(sim, "whale"))
            account = (await hashes(sim, headers))[0]
            response = await transactions(
                sim, headers, account, START_TIME - timedelta(days=20), START_TIME
            )
            decimals = re.findall(
                rb'"(?:netAmount|cost|price|amount)":-?\d+\.(\d+)', response.content
            )
            assert decimals and max(len(d) for d in decimals) <= 4


class TestEvolution:
    async def test_pending_posts_cancelled_disappears_and_new_rows_appear(
        self, tmp_path: Path
    ) -> None:
        async with simulator_client(tmp_path) as sim:
            headers = bearer(await login_tokens(sim))
            account = (await hashes(sim, headers))[0]
            events = {
                e["name"]: e["activity_id"]
                for e in (await sim.get("/control/users/demo/events")).json()
            }

            async def by_id(end: datetime) -> dict[int, dict[str, Any]]:
                response = await transactions(sim, headers, account, end - timedelta(days=5), end)
                return {r["activityId"]: r for r in response.json()}

            before = await by_id(START_TIME + timedelta(days=2))
            assert before[events["pending_dividend_posts"]]["status"] == "PENDING"
            assert before[events["pending_dividend_posts"]]["netAmount"] == 18.4
            assert before[events["pending_withdrawal_cancelled"]]["status"] == "PENDING"
            assert events["new_deposit"] not in before and events["new_trade"] not in before

            await sim.post("/control/clock", json={"advance_seconds": 86_400})
            # A day later the 30-minute access token is dead: log in again, like a user would.
            headers = bearer(await login_tokens(sim))
            after = await by_id(START_TIME + timedelta(days=2))
            dividend = after[events["pending_dividend_posts"]]
            assert dividend["status"] == "VALID" and dividend["netAmount"] == 18.42
            assert "settlementDate" in dividend
            assert events["pending_withdrawal_cancelled"] not in after
            assert events["new_deposit"] in after and events["new_trade"] in after

    async def test_cancelled_rows_can_be_shown_as_invalid(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path, simulator_cancelled_transactions="invalid") as sim:
            await sim.post("/control/clock", json={"advance_seconds": 86_400})
            headers = bearer(await login_tokens(sim))
            account = (await hashes(sim, headers))[0]
            events = {
                e["name"]: e["activity_id"]
                for e in (await sim.get("/control/users/demo/events")).json()
            }
            url = (
                f"/trader/v1/accounts/{account}/transactions/"
                f"{events['pending_withdrawal_cancelled']}"
            )
            assert (await sim.get(url, headers=headers)).json()[0]["status"] == "INVALID"


class TestGroundTruth:
    async def test_control_summary_equals_what_the_trader_endpoints_return(
        self, tmp_path: Path
    ) -> None:
        async with simulator_client(tmp_path) as sim:
            await sim.post("/control/clock", json={"advance_seconds": 13 * 3600})
            now = START_TIME + timedelta(hours=13)
            headers = bearer(await login_tokens(sim))
            summary = (await sim.get("/control/users/demo/summary")).json()
            positions = (
                await sim.get(
                    "/trader/v1/accounts", params={"fields": "positions"}, headers=headers
                )
            ).json()
            for account, full in zip(summary["accounts"], positions, strict=True):
                rows = await all_rows(sim, headers, account["account_hash"], now)
                assert account["transaction_count"] == len(rows)
                assert len({r["activityId"] for r in rows}) == len(rows)
                total = sum((Decimal(str(r["netAmount"])) for r in rows), Decimal(0))
                assert Decimal(account["net_amount_sum"]) == total
                assert account["pending_count"] == sum(r["status"] == "PENDING" for r in rows)
                assert account["positions_count"] == len(full["securitiesAccount"]["positions"])

    async def test_summary_as_of_an_earlier_instant_and_unknown_user(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            now = (await sim.get("/control/users/demo/summary")).json()
            earlier = (
                await sim.get(
                    "/control/users/demo/summary", params={"as_of": "2025-01-01T00:00:00Z"}
                )
            ).json()
            assert earlier["as_of"] == "2025-01-01T00:00:00Z"
            assert (
                earlier["accounts"][0]["transaction_count"]
                < now["accounts"][0]["transaction_count"]
            )
            naive = await sim.get(
                "/control/users/demo/summary", params={"as_of": "2025-01-01T00:00:00"}
            )
            assert naive.status_code == 400
            assert (await sim.get("/control/users/nobody/summary")).status_code == 404

    async def test_whale_summary_counts_at_least_100k(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            body = (await sim.get("/control/users/whale/summary")).json()
            assert body["accounts"][0]["transaction_count"] >= 100_000


class TestGateway:
    async def test_missing_unknown_and_malformed_bearer_tokens_get_the_gateway_401(
        self, tmp_path: Path
    ) -> None:
        async with simulator_client(tmp_path) as sim:
            for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
                response = await sim.get("/trader/v1/accounts", headers=headers)
                assert response.status_code == 401
                error = response.json()["errors"][0]
                assert error["status"] == 401 and error["title"] == "Unauthorized"
                assert error["detail"] == "Client not authorized"
                assert CORREL.match(response.headers["Schwab-Client-CorrelId"])

    async def test_every_response_carries_a_fresh_correlation_id(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            headers = bearer(await login_tokens(sim))
            seen = set()
            for path in (
                "/trader/v1/accounts",
                "/trader/v1/accounts/xyz",
                "/nope",
                "/v1/oauth/authorize",
            ):
                response = await sim.get(path, headers=headers)
                seen.add(response.headers["Schwab-Client-CorrelId"])
            assert len(seen) == 4 and all(CORREL.match(c) for c in seen)

    async def test_more_than_120_calls_a_minute_get_429_until_the_window_passes(
        self, tmp_path: Path
    ) -> None:
        async with simulator_client(tmp_path) as sim:
            demo = bearer(await login_tokens(sim))
            whale = bearer(await login_tokens(sim, "whale"))
            statuses = [
                (await sim.get("/trader/v1/userPreference", headers=demo)).status_code
                for _ in range(121)
            ]
            assert statuses[:120] == [200] * 120 and statuses[120] == 429
            limited = await sim.get("/trader/v1/userPreference", headers=demo)
            assert limited.status_code == 429
            assert 1 <= int(limited.headers["Retry-After"]) <= 60
            assert limited.json()["errors"][0]["status"] == 429
            # Another owner has its own budget.
            assert (await sim.get("/trader/v1/userPreference", headers=whale)).status_code == 200
            await sim.post("/control/clock", json={"advance_seconds": 60})
            assert (await sim.get("/trader/v1/userPreference", headers=demo)).status_code == 200
            stats = (await sim.get("/control/stats")).json()
            assert stats["rate_limited"] == 2
