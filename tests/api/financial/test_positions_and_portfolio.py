"""`/positions` (optionally grouped by symbol) and `/portfolio`: exact sums, scoping."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from sqlalchemy import update

from dashtam.core.database import session_scope
from dashtam.core.state import AppResources
from dashtam.models.financial import Account, AccountType
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
)


@pytest.fixture
async def holder(resources: AppResources) -> Holder:
    return await seed_holder(resources, name="Individual")


async def seed_two_accounts(resources: AppResources, holder: Holder) -> dict[str, object]:
    """Values chosen so that float addition gets them wrong (0.1 + 0.2, 1e-8 steps, 2^53)."""
    ira = await seed_account(resources, holder, name="Roth", type=AccountType.ROTH_IRA)
    await seed_positions(
        resources,
        holder,
        [
            make_position("AAPL", "0.1", "0.1", cost_basis="0.1", unrealized_pl="0.00000001"),
            make_position(
                "SWVXX",
                "1250.37",
                "1250.37",
                asset_type="cash_equivalent",
                cost_basis="1250.37",
                unrealized_pl="0",
            ),
        ],
        as_of=BASE_TIME,
    )
    await seed_positions(
        resources,
        holder,
        [
            make_position("AAPL", "0.2", "0.2", cost_basis="0.2", unrealized_pl="0.00000002"),
            make_position("VOO", "9007199254.7409930", "9007199254.7409930", asset_type="etf"),
        ],
        account_id=ira,
        as_of=BASE_TIME,
    )
    await seed_balance(
        resources, holder.account_id, make_balance("1250.77", cash="0.30"), BASE_TIME
    )
    await seed_balance(
        resources, ira, make_balance("9007199254.94099301", cash="0.00000001"), BASE_TIME
    )
    return {"ira": ira}


class TestPositions:
    async def test_lists_every_accounts_holdings(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        await seed_two_accounts(resources, holder)

        response = await client.get(f"{API}/positions", headers=holder.headers)

        assert response.status_code == 200
        symbols = sorted(i["symbol"] for i in response.json()["items"])
        assert symbols == ["AAPL", "AAPL", "SWVXX", "VOO"]

    async def test_grouping_by_symbol_sums_exactly(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        seeded = await seed_two_accounts(resources, holder)

        response = await client.get(f"{API}/positions?group_by=symbol", headers=holder.headers)

        groups = {g["symbol"]: g for g in response.json()["items"]}
        aapl = groups["AAPL"]
        assert (aapl["quantity"], aapl["market_value"], aapl["cost_basis"]) == (
            "0.3",
            "0.30",
            "0.30",
        )
        assert aapl["unrealized_pl"] == "0.00000003"
        assert sorted(aapl["account_ids"]) == sorted([str(holder.account_id), str(seeded["ira"])])
        # VOO has no cost basis anywhere: unknown, not zero.
        assert groups["VOO"]["cost_basis"] is None
        assert groups["VOO"]["market_value"] == "9007199254.740993"

    async def test_unknown_grouping_is_422(self, client: httpx.AsyncClient, holder: Holder) -> None:
        response = await client.get(f"{API}/positions?group_by=account", headers=holder.headers)
        assert response.status_code == 422

    async def test_other_users_holdings_are_invisible(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        await seed_two_accounts(resources, holder)
        stranger = await seed_holder(resources)

        response = await client.get(f"{API}/positions?group_by=symbol", headers=stranger.headers)

        assert response.json()["items"] == []


class TestPortfolio:
    async def test_totals_are_exact_sums(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        seeded = await seed_two_accounts(resources, holder)

        response = await client.get(f"{API}/portfolio", headers=holder.headers)

        assert response.status_code == 200
        body = response.json()
        assert body["currency"] == "USD"
        assert body["total_value"] == "9007200505.71099301"
        assert body["cash"] == "0.30000001"
        assert body["invested"] == "9007200505.410993"
        assert body["unrealized_pl"] == "0.00000003"
        accounts = {a["account_id"]: a for a in body["by_account"]}
        assert accounts[str(holder.account_id)]["invested"] == "1250.47"
        assert accounts[str(holder.account_id)]["cash"] == "0.30"
        assert accounts[str(seeded["ira"])]["type"] == "roth_ira"
        buckets = {b["asset_type"]: b for b in body["by_asset_type"]}
        assert buckets["equity"]["market_value"] == "0.30"
        assert buckets["cash_equivalent"]["market_value"] == "1250.37"
        assert buckets["etf"]["cost_basis"] is None
        assert buckets["cash"]["market_value"] == "0.30000001"
        assert body["as_of"] is not None

    async def test_inactive_accounts_and_other_currencies_are_left_out(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        await seed_balance(resources, holder.account_id, make_balance("100"), BASE_TIME)
        euro = await seed_account(resources, holder, currency="EUR")
        await seed_balance(resources, euro, make_balance("70", currency="EUR"), BASE_TIME)
        closed = await seed_account(resources, holder, name="Closed")
        await seed_balance(resources, closed, make_balance("5"), BASE_TIME)
        async with session_scope(resources.session_factory) as session:
            await session.execute(
                update(Account).where(Account.id == closed).values(is_active=False)  # type: ignore[arg-type]
            )

        usd = (await client.get(f"{API}/portfolio", headers=holder.headers)).json()
        eur = (await client.get(f"{API}/portfolio?currency=EUR", headers=holder.headers)).json()

        assert (usd["total_value"], len(usd["by_account"])) == ("100.00", 1)
        assert (eur["total_value"], eur["currency"]) == ("70.00", "EUR")

    async def test_empty_portfolio_is_zero_not_an_error(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        nobody = await seed_holder(resources)
        body = (await client.get(f"{API}/portfolio", headers=nobody.headers)).json()
        assert (body["total_value"], body["cash"], body["invested"]) == ("0.00", "0.00", "0.00")

    @pytest.mark.parametrize("currency", ["usd", "US", "DOLLARS"])
    async def test_bad_currency_is_422(
        self, client: httpx.AsyncClient, holder: Holder, currency: str
    ) -> None:
        response = await client.get(f"{API}/portfolio?currency={currency}", headers=holder.headers)
        assert response.status_code == 422


def test_the_values_above_really_break_floats() -> None:
    # Guard the premise of these tests: summing the same values as floats gets them wrong.
    def float_sum(*values: str) -> Decimal:
        return Decimal(repr(sum(float(v) for v in values)))

    assert float_sum("0.1", "0.2") != Decimal("0.3")
    assert float_sum("1250.77", "9007199254.94099301") != Decimal("9007200505.71099301")
    assert float_sum("0.00000001", "0.00000002") != Decimal("0.00000003")
