"""`/accounts`, `/accounts/{id}`, `/accounts/{id}/balances`, `/accounts/{id}/positions`."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest

from dashtam.core.state import AppResources
from dashtam.models.financial import AccountType
from tests.support.financial_factories import (
    API,
    BASE_TIME,
    Holder,
    make_balance,
    make_position,
    seed_account,
    seed_balance,
    seed_holder,
    seed_positions,
    walk_pages,
)

BAD_INSTANTS = [
    "2025-02-30",
    "yesterday",
    "2025-03-01T00:00:00",  # no offset: ambiguous
    "9999-12-31T23:59:59-14:00",  # past year 9999 in UTC
    "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
]


@pytest.fixture
async def holder(resources: AppResources) -> Holder:
    return await seed_holder(resources, name="Individual", masked_number="****7365")


@pytest.fixture
async def stranger(resources: AppResources) -> Holder:
    return await seed_holder(resources, name="Stranger's")


class TestListAccounts:
    async def test_lists_own_accounts_with_latest_balance_as_strings(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder, stranger: Holder
    ) -> None:
        await seed_balance(resources, holder.account_id, make_balance("100.10"), BASE_TIME)
        await seed_balance(
            resources,
            holder.account_id,
            make_balance("17337.67", available="3120.55"),
            BASE_TIME + timedelta(days=1),
        )

        response = await client.get(f"{API}/accounts", headers=holder.headers)

        assert response.status_code == 200
        body = response.json()
        assert (body["next_cursor"], body["has_more"]) == (None, False)
        (item,) = body["items"]
        assert item["id"] == str(holder.account_id)
        assert item["provider_id"] == str(holder.provider_id)
        assert (item["name"], item["type"], item["currency"]) == ("Individual", "margin", "USD")
        assert item["masked_number"] == "****7365"
        assert item["balance"] == {
            "current": "17337.67",
            "available": "3120.55",
            "as_of": "2025-03-15T14:00:00Z",
        }

    async def test_account_without_snapshot_has_no_balance(
        self, client: httpx.AsyncClient, holder: Holder
    ) -> None:
        response = await client.get(f"{API}/accounts", headers=holder.headers)
        assert response.json()["items"][0]["balance"] is None

    async def test_filters_by_type_and_provider(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        ira = await seed_account(resources, holder, name="IRA", type=AccountType.IRA)

        by_type = await client.get(f"{API}/accounts?type=ira", headers=holder.headers)
        by_provider = await client.get(
            f"{API}/accounts", headers=holder.headers, params={"provider_id": holder.provider_id}
        )

        assert [i["id"] for i in by_type.json()["items"]] == [str(ira)]
        assert len(by_provider.json()["items"]) == 2

    async def test_another_users_provider_filter_is_not_found(
        self, client: httpx.AsyncClient, holder: Holder, stranger: Holder
    ) -> None:
        response = await client.get(
            f"{API}/accounts", headers=holder.headers, params={"provider_id": stranger.provider_id}
        )
        assert response.status_code == 404
        assert response.json()["code"] == "provider_not_found"

    @pytest.mark.parametrize("query", ["type=savings", "provider_id=not-a-uuid"])
    async def test_bad_filters_are_422(
        self, client: httpx.AsyncClient, holder: Holder, query: str
    ) -> None:
        response = await client.get(f"{API}/accounts?{query}", headers=holder.headers)
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")

    async def test_requires_authentication(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"{API}/accounts")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


class TestGetAccount:
    async def test_own_account_has_every_latest_balance_field(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        await seed_balance(
            resources,
            holder.account_id,
            make_balance("9812.4", cash="2500", buying_power="0.1", money_market_fund="0"),
            BASE_TIME,
        )

        response = await client.get(f"{API}/accounts/{holder.account_id}", headers=holder.headers)

        assert response.status_code == 200
        balances = response.json()["balances"]
        assert balances["current"] == "9812.40"
        assert balances["cash"] == "2500.00"
        assert balances["buying_power"] == "0.10"
        assert balances["money_market_fund"] == "0.00"
        assert balances["available"] is None

    async def test_another_users_account_is_not_found(
        self, client: httpx.AsyncClient, holder: Holder, stranger: Holder
    ) -> None:
        for path in ("", "/balances", "/positions"):
            response = await client.get(
                f"{API}/accounts/{stranger.account_id}{path}", headers=holder.headers
            )
            assert response.status_code == 404, path
            assert response.json()["code"] == "account_not_found"

    async def test_unknown_and_malformed_ids(
        self, client: httpx.AsyncClient, holder: Holder
    ) -> None:
        unknown = await client.get(f"{API}/accounts/{uuid.uuid4()}", headers=holder.headers)
        malformed = await client.get(f"{API}/accounts/12", headers=holder.headers)
        assert (unknown.status_code, malformed.status_code) == (404, 422)


class TestBalances:
    async def seed_days(self, resources: AppResources, holder: Holder, days: int) -> None:
        for day in range(days):
            await seed_balance(
                resources,
                holder.account_id,
                make_balance(f"{1000 + day}.01"),
                BASE_TIME + timedelta(days=day),
            )

    async def test_history_is_newest_first_and_pages_without_gaps(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        await self.seed_days(resources, holder, 7)

        items = await walk_pages(
            client, f"/accounts/{holder.account_id}/balances", holder.headers, limit=3
        )

        assert [i["current"] for i in items] == [f"{1000 + d}.01" for d in range(6, -1, -1)]

    async def test_since_is_inclusive_and_until_exclusive(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        await self.seed_days(resources, holder, 5)

        response = await client.get(
            f"{API}/accounts/{holder.account_id}/balances",
            headers=holder.headers,
            params={"since": "2025-03-15T14:00:00Z", "until": "2025-03-17T14:00:00+00:00"},
        )

        assert [i["current"] for i in response.json()["items"]] == ["1002.01", "1001.01"]

    @pytest.mark.parametrize("value", BAD_INSTANTS)
    async def test_bad_dates_are_422(
        self, client: httpx.AsyncClient, holder: Holder, value: str
    ) -> None:
        response = await client.get(
            f"{API}/accounts/{holder.account_id}/balances",
            headers=holder.headers,
            params={"since": value},
        )
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    async def test_since_after_until_is_422(
        self, client: httpx.AsyncClient, holder: Holder
    ) -> None:
        response = await client.get(
            f"{API}/accounts/{holder.account_id}/balances",
            headers=holder.headers,
            params={"since": "2025-03-02", "until": "2025-03-01"},
        )
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_filter"

    async def test_a_transactions_cursor_is_refused_here(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        from dashtam.services.financial.cursors import CursorCodec

        codec = CursorCodec(resources.settings.secret_key_bytes)
        cursor = codec.encode("tx", BASE_TIME.isoformat(), str(uuid.uuid4()))

        response = await client.get(
            f"{API}/accounts/{holder.account_id}/balances",
            headers=holder.headers,
            params={"cursor": cursor},
        )

        assert response.status_code == 422
        assert response.json()["code"] == "invalid_cursor"


class TestAccountPositions:
    async def test_lists_holdings_with_exact_strings(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        await seed_positions(
            resources,
            holder,
            [
                make_position(
                    "AAPL",
                    "25",
                    "4563.75",
                    average_price="171.4025",
                    cost_basis="4285.0625",
                    unrealized_pl="278.6875",
                    cusip="037833100",
                )
            ],
        )

        response = await client.get(
            f"{API}/accounts/{holder.account_id}/positions", headers=holder.headers
        )

        assert response.status_code == 200
        (item,) = response.json()["items"]
        assert item["symbol"] == "AAPL"
        assert item["quantity"] == "25"
        assert item["average_price"] == "171.4025"
        assert item["market_value"] == "4563.75"
        assert item["cost_basis"] == "4285.0625"
        assert item["unrealized_pl"] == "278.6875"
        assert item["currency"] == "USD"
        assert item["account_id"] == str(holder.account_id)
