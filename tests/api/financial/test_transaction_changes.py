"""`/transaction-changes`: replaying the feed mirrors `/transactions` exactly."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from dashtam.core.state import AppResources
from dashtam.models.financial import TransactionStatus
from dashtam.services.financial.cursors import CursorCodec
from tests.support.financial_factories import (
    API,
    BASE_TIME,
    Holder,
    changed,
    make_transactions,
    seed_account,
    seed_holder,
    seed_transactions,
    walk_pages,
)

WINDOW = (BASE_TIME - timedelta(days=1), BASE_TIME)


@pytest.fixture
async def holder(resources: AppResources) -> Holder:
    return await seed_holder(resources)


class Mirror:
    """A client that keeps a local copy by replaying the feed."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers
        self.rows: dict[str, dict[str, Any]] = {}
        self.cursor: str | None = None
        self.calls = 0

    async def sync(self, limit: int = 4) -> dict[str, int]:
        totals = {"added": 0, "modified": 0, "removed": 0}
        while True:
            params: dict[str, Any] = {"limit": limit}
            if self.cursor:
                params["cursor"] = self.cursor
            response = await self.client.get(
                f"{API}/transaction-changes", headers=self.headers, params=params
            )
            assert response.status_code == 200, response.text
            body = response.json()
            self.calls += 1
            for item in body["added"] + body["modified"]:
                self.rows[item["id"]] = item
            for row_id in body["removed"]:
                self.rows.pop(row_id, None)
            for key in totals:
                totals[key] += len(body[key])
            assert body["next_cursor"]
            self.cursor = body["next_cursor"]
            if not body["has_more"]:
                return totals


async def listed(client: httpx.AsyncClient, holder: Holder) -> dict[str, dict[str, Any]]:
    items = await walk_pages(client, "/transactions", holder.headers, limit=500)
    return {item["id"]: item for item in items}


class TestTransactionChanges:
    async def test_replaying_adds_modifies_and_removes_mirrors_the_list(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        other_account = await seed_account(resources, holder)
        mirror = Mirror(client, holder.headers)
        rows = make_transactions(20)
        await seed_transactions(resources, holder, rows, window=WINDOW)

        assert await mirror.sync() == {"added": 20, "modified": 0, "removed": 0}
        assert mirror.rows == await listed(client, holder)

        # Round 2: edits, a pending row posting, removals, additions on two accounts.
        round2 = [
            changed(r, amount=r.amount + Decimal("0.01")) if i % 4 == 0 else r
            for i, r in enumerate(rows)
        ]
        round2[1] = changed(rows[1], status=TransactionStatus.PENDING)
        kept = [r for i, r in enumerate(round2) if i not in (5, 6, 7)]
        await seed_transactions(resources, holder, kept, window=WINDOW)
        await seed_transactions(
            resources, holder, make_transactions(4, start=500), account_id=other_account
        )

        counts = await mirror.sync(limit=3)
        assert counts == {"added": 4, "modified": 6, "removed": 3}
        assert mirror.rows == await listed(client, holder)

        # Round 3: a removed row reappears, one row changes twice, nothing else moves.
        round3 = [*kept, rows[5]]
        round3[0] = changed(round3[0], description="first edit")
        await seed_transactions(resources, holder, round3, window=WINDOW)
        round3[0] = changed(round3[0], description="second edit")
        await seed_transactions(resources, holder, round3, window=WINDOW)

        counts = await mirror.sync(limit=2)
        assert counts == {"added": 0, "modified": 2, "removed": 0}
        assert mirror.rows == await listed(client, holder)

        # A fresh client replaying from the beginning reaches the same state.
        fresh = Mirror(client, holder.headers)
        await fresh.sync(limit=500)
        assert fresh.rows == mirror.rows

    async def test_no_changes_returns_empty_lists_and_the_same_position(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        await seed_transactions(resources, holder, make_transactions(2))
        mirror = Mirror(client, holder.headers)
        await mirror.sync()
        position = mirror.cursor

        await seed_transactions(resources, holder, make_transactions(2))  # unchanged re-sync
        response = await client.get(
            f"{API}/transaction-changes", headers=holder.headers, params={"cursor": position}
        )

        body = response.json()
        assert (body["added"], body["modified"], body["removed"]) == ([], [], [])
        assert (body["next_cursor"], body["has_more"]) == (position, False)

    async def test_feeds_are_per_user(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder
    ) -> None:
        stranger = await seed_holder(resources)
        await seed_transactions(resources, stranger, make_transactions(3))
        await seed_transactions(resources, holder, make_transactions(1))

        mine = Mirror(client, holder.headers)
        await mine.sync()

        assert [r["external_id"] for r in mine.rows.values()] == ["0"]
        assert all(r["account_id"] == str(holder.account_id) for r in mine.rows.values())

    @pytest.mark.parametrize("value", [-1, "7", 1.5, True])
    async def test_forged_positions_are_refused_even_when_signed(
        self, client: httpx.AsyncClient, resources: AppResources, holder: Holder, value: Any
    ) -> None:
        cursor = CursorCodec(resources.settings.secret_key_bytes).encode("chg", value)
        response = await client.get(
            f"{API}/transaction-changes", headers=holder.headers, params={"cursor": cursor}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_cursor"

    @pytest.mark.parametrize("cursor", ["", "abc", "eyJ9.AAAA"])
    async def test_malformed_cursors_are_422(
        self, client: httpx.AsyncClient, holder: Holder, cursor: str
    ) -> None:
        response = await client.get(
            f"{API}/transaction-changes", headers=holder.headers, params={"cursor": cursor}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_cursor"

    @pytest.mark.parametrize("limit", [0, 501])
    async def test_bad_limits_are_422(
        self, client: httpx.AsyncClient, holder: Holder, limit: int
    ) -> None:
        response = await client.get(
            f"{API}/transaction-changes", headers=holder.headers, params={"limit": limit}
        )
        assert response.status_code == 422
