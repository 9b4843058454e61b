"""`/transactions` and `/transactions/{id}`: filters, keyset pagination, errors, isolation."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from dashtam.core.state import AppResources
from dashtam.models.financial import TransactionStatus, TransactionType
from tests.support.financial_factories import (
    API,
    BASE_TIME,
    Holder,
    make_transaction,
    make_transactions,
    seed_account,
    seed_holder,
    seed_transactions,
    walk_pages,
)


@pytest.fixture
async def holder(resources: AppResources) -> Holder:
    return await seed_holder(resources)


@pytest.fixture
async def stranger(resources: AppResources) -> Holder:
    return await seed_holder(resources)


def ids(body: dict[str, object]) -> list[str]:
    items = body["items"]
    assert isinstance(items, list)
    return [item["external_id"] for item in items]


class TestListTransactions:
    async def test_newest_first_with_every_field_and_exact_strings(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        trade = make_transaction(
            "88145023391",
            posted_at=BASE_TIME + timedelta(seconds=7),
            type=TransactionType.TRADE,
            subtype="buy",
            amount=Decimal("-1902.52"),
            symbol="AAPL",
            quantity=Decimal("10"),
            price=Decimal("190.25"),
            fees=Decimal("0.02"),
            trade_date=BASE_TIME.date(),
            settlement_date=(BASE_TIME + timedelta(days=3)).date(),
            description="Bought 10 AAPL @ 190.25",
        )
        older = make_transaction("1", posted_at=BASE_TIME - timedelta(days=1))
        await seed_transactions(resources, holder, [older, trade])

        response = await client.get(f"{API}/transactions", headers=holder.headers)

        assert response.status_code == 200
        body = response.json()
        assert ids(body) == ["88145023391", "1"]
        assert (body["has_more"], body["next_cursor"]) == (False, None)
        item = body["items"][0]
        assert item["account_id"] == str(holder.account_id)
        assert item["provider_id"] == str(holder.provider_id)
        assert item["posted_at"] == "2025-03-14T14:00:07Z"
        assert (item["trade_date"], item["settlement_date"]) == ("2025-03-14", "2025-03-17")
        assert (item["type"], item["subtype"], item["status"]) == ("trade", "buy", "posted")
        assert (item["amount"], item["currency"], item["fees"]) == ("-1902.52", "USD", "0.02")
        assert (item["symbol"], item["quantity"], item["price"]) == ("AAPL", "10", "190.25")
        assert item["description"] == "Bought 10 AAPL @ 190.25"

        single = await client.get(f"{API}/transactions/{item['id']}", headers=holder.headers)
        assert single.status_code == 200
        assert single.json() == item

    async def test_each_filter(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        second = await seed_account(resources, holder)
        day = timedelta(days=1)
        await seed_transactions(
            resources,
            holder,
            [
                make_transaction(
                    "dep",
                    posted_at=BASE_TIME - 3 * day,
                    type=TransactionType.DEPOSIT,
                    amount=Decimal("5000.00"),
                ),
                make_transaction(
                    "buy",
                    posted_at=BASE_TIME - 2 * day,
                    type=TransactionType.TRADE,
                    amount=Decimal("-1902.52"),
                    symbol="AAPL",
                ),
                make_transaction(
                    "pend",
                    posted_at=BASE_TIME - day,
                    amount=Decimal("-300.00"),
                    status=TransactionStatus.PENDING,
                ),
            ],
        )
        await seed_transactions(
            resources,
            holder,
            [
                make_transaction(
                    "div",
                    posted_at=BASE_TIME,
                    type=TransactionType.DIVIDEND,
                    amount=Decimal("6.25"),
                    symbol="AAPL",
                )
            ],
            account_id=second,
        )

        async def query(**params: object) -> list[str]:
            response = await client.get(
                f"{API}/transactions", headers=holder.headers, params=params
            )
            assert response.status_code == 200, response.text
            return ids(response.json())

        assert await query(account_id=second) == ["div"]
        assert await query(provider_id=holder.provider_id) == ["div", "pend", "buy", "dep"]
        assert await query(since="2025-03-12") == ["div", "pend", "buy"]
        assert await query(until="2025-03-12T14:00:00Z") == ["dep"]
        assert await query(since="2025-03-12", until="2025-03-13T14:00:00Z") == ["buy"]
        assert await query(type="trade") == ["buy"]
        assert await query(status="pending") == ["pend"]
        assert await query(symbol="aapl") == ["div", "buy"]
        assert await query(min_amount="6.25") == ["div", "dep"]
        assert await query(max_amount="-300.00") == ["pend", "buy"]
        assert await query(min_amount="-1000", max_amount="10") == ["div", "pend"]
        assert await query(type="trade", symbol="AAPL", account_id=second) == []

    async def test_amount_filters_are_exact_beyond_float_precision(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        await seed_transactions(
            resources,
            holder,
            [
                make_transaction("a", amount=Decimal("0.30000001")),
                make_transaction("b", amount=Decimal("0.3")),
                make_transaction("c", amount=Decimal("12345678901.12345678")),
            ],
        )

        response = await client.get(
            f"{API}/transactions",
            headers=holder.headers,
            params={"min_amount": "0.30000001", "max_amount": "12345678901.12345677"},
        )

        assert ids(response.json()) == ["a"]

    @pytest.mark.parametrize("limit", ["0", "501", "-1", "ten", "1e3"])
    async def test_bad_limits_are_422(
        self, client: httpx.AsyncClient, holder: Holder, limit: str
    ) -> None:
        response = await client.get(f"{API}/transactions?limit={limit}", headers=holder.headers)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    @pytest.mark.parametrize(
        "query",
        [
            "since=2025-02-30",
            "until=2025-03-01T00:00:00",
            "since=9999-12-31T23:59:59-14:00",
            "type=payment",
            "status=settled",
            "min_amount=NaN",
            "min_amount=Infinity",
            "max_amount=1e40",
            "min_amount=abc",
            "account_id=123",
            "symbol=",
        ],
    )
    async def test_bad_filters_are_422(
        self, client: httpx.AsyncClient, holder: Holder, query: str
    ) -> None:
        response = await client.get(f"{API}/transactions?{query}", headers=holder.headers)
        assert response.status_code == 422, response.text

    async def test_contradictory_ranges_are_422(
        self, client: httpx.AsyncClient, holder: Holder
    ) -> None:
        for params in (
            {"min_amount": "5", "max_amount": "1"},
            {"since": "2025-03-02", "until": "2025-03-02"},
        ):
            response = await client.get(
                f"{API}/transactions", headers=holder.headers, params=params
            )
            assert response.status_code == 422
            assert response.json()["code"] == "invalid_filter"

    async def test_malformed_and_tampered_cursors_are_422(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        await seed_transactions(resources, holder, make_transactions(3))
        first = await client.get(f"{API}/transactions?limit=1", headers=holder.headers)
        cursor = first.json()["next_cursor"]
        body, signature = cursor.split(".")
        forged_body = (
            base64.urlsafe_b64encode(
                b'["tx","2999-01-01T00:00:00+00:00","00000000-0000-0000-0000-000000000000"]'
            )
            .decode()
            .rstrip("=")
        )

        for bad in (
            "garbage",
            "a.b.c",
            f"{body}.{signature[:-2]}AA",
            f"{forged_body}.{signature}",
            "x" * 600,
            f"{body}.!!!",
        ):
            response = await client.get(
                f"{API}/transactions", headers=holder.headers, params={"cursor": bad}
            )
            assert response.status_code == 422, bad
            if len(bad) <= 512:
                assert response.json()["code"] == "invalid_cursor", bad

    async def test_default_page_is_fifty(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        await seed_transactions(resources, holder, make_transactions(51))
        body = (await client.get(f"{API}/transactions", headers=holder.headers)).json()
        assert (len(body["items"]), body["has_more"]) == (50, True)

    async def test_removed_rows_are_gone_from_list_and_detail(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        rows = make_transactions(3)
        await seed_transactions(resources, holder, rows)
        listed = (await client.get(f"{API}/transactions", headers=holder.headers)).json()
        gone_id = next(i["id"] for i in listed["items"] if i["external_id"] == "1")

        window = (BASE_TIME - timedelta(days=1), BASE_TIME)
        await seed_transactions(resources, holder, [rows[0], rows[2]], window=window)

        after = (await client.get(f"{API}/transactions", headers=holder.headers)).json()
        assert ids(after) == ["0", "2"]
        detail = await client.get(f"{API}/transactions/{gone_id}", headers=holder.headers)
        assert detail.status_code == 404
        assert detail.json()["code"] == "transaction_not_found"


class TestIsolation:
    async def test_two_users_see_only_their_own(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder, stranger: Holder
    ) -> None:
        await seed_transactions(resources, holder, make_transactions(3))
        await seed_transactions(resources, stranger, make_transactions(4, start=100))
        theirs = (await client.get(f"{API}/transactions", headers=stranger.headers)).json()

        mine = await walk_pages(client, "/transactions", holder.headers, limit=2)

        assert sorted(i["external_id"] for i in mine) == ["0", "1", "2"]
        for item in theirs["items"]:
            response = await client.get(f"{API}/transactions/{item['id']}", headers=holder.headers)
            assert response.status_code == 404

    async def test_foreign_account_and_provider_filters_are_404(
        self, client: httpx.AsyncClient, holder: Holder, stranger: Holder
    ) -> None:
        by_account = await client.get(
            f"{API}/transactions",
            headers=holder.headers,
            params={"account_id": stranger.account_id},
        )
        by_provider = await client.get(
            f"{API}/transactions",
            headers=holder.headers,
            params={"provider_id": stranger.provider_id},
        )
        unknown = await client.get(f"{API}/transactions/{uuid.uuid4()}", headers=holder.headers)
        assert (by_account.status_code, by_provider.status_code, unknown.status_code) == (
            404,
            404,
            404,
        )


class TestPagination:
    async def test_walking_pages_while_rows_arrive_has_no_duplicates_or_gaps(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        # Same timestamps across rows force the id tie-breaker to do its job.
        rows = [
            make_transaction(i, posted_at=BASE_TIME - timedelta(minutes=i // 3)) for i in range(60)
        ]
        await seed_transactions(resources, holder, rows)
        seen: list[str] = []
        cursor = None
        arrivals = 0
        while True:
            params: dict[str, object] = {"limit": 7}
            if cursor:
                params["cursor"] = cursor
            body = (
                await client.get(f"{API}/transactions", headers=holder.headers, params=params)
            ).json()
            seen.extend(ids(body))
            # New rows land both at the top (newer) and in the middle of what is left to read.
            await seed_transactions(
                resources,
                holder,
                [
                    make_transaction(
                        f"new-top-{arrivals}", posted_at=BASE_TIME + timedelta(hours=1)
                    ),
                    make_transaction(
                        f"new-mid-{arrivals}",
                        posted_at=BASE_TIME - timedelta(minutes=10, seconds=30),
                    ),
                ],
            )
            arrivals += 1
            if not body["has_more"]:
                break
            cursor = body["next_cursor"]

        assert len(seen) == len(set(seen))
        assert {r.external_id for r in rows} <= set(seen)
        assert not any(s.startswith("new-top") for s in seen)
