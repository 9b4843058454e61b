"""The sync store on a real database: idempotent bulk upserts, soft deletes, change numbers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from dashtam.core.database import session_scope
from dashtam.core.state import AppResources
from dashtam.models.financial import (
    Account,
    BalanceSnapshot,
    FinancialChangeCounter,
    Position,
    Transaction,
    TransactionStatus,
)
from dashtam.services.financial.repository import (
    UpsertCounts,
    remove_provider_transactions,
    replace_positions,
    reserve_change_numbers,
    snapshot_balances,
    upsert_accounts,
    upsert_transactions,
)
from tests.support.financial_factories import (
    BASE_TIME,
    Holder,
    changed,
    make_account,
    make_balance,
    make_position,
    make_transaction,
    make_transactions,
    seed_account,
    seed_holder,
    seed_transactions,
)

_t = Transaction.__table__  # type: ignore[attr-defined]


@pytest.fixture
async def holder(resources: AppResources) -> Holder:
    return await seed_holder(resources)


async def snapshot(resources: AppResources, account_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """Every row of the account by external id, all columns."""
    async with session_scope(resources.session_factory) as session:
        rows = (await session.execute(select(_t).where(_t.c.account_id == account_id))).all()
    return {row.external_id: dict(row._mapping) for row in rows}


async def counter_value(resources: AppResources, user_id: uuid.UUID) -> int:
    async with session_scope(resources.session_factory) as session:
        value = (
            await session.execute(
                select(FinancialChangeCounter.value).where(
                    FinancialChangeCounter.user_id == user_id
                )
            )
        ).scalar_one_or_none()
    return value or 0


WINDOW = (BASE_TIME - timedelta(days=30), BASE_TIME)


class TestUpsertTransactions:
    async def test_first_write_adds_every_row_with_distinct_change_numbers(
        self, resources: AppResources, holder: Holder
    ) -> None:
        counts = await seed_transactions(
            resources, holder, make_transactions(10_000), window=WINDOW
        )

        assert counts == UpsertCounts(added=10_000, modified=0, removed=0)
        state = await snapshot(resources, holder.account_id)
        assert len(state) == 10_000
        seqs = sorted(row["change_seq"] for row in state.values())
        assert seqs == list(range(1, 10_001))
        assert all(row["created_seq"] == row["change_seq"] for row in state.values())
        assert await counter_value(resources, holder.user_id) == 10_000

    async def test_rewriting_unchanged_rows_writes_nothing(
        self, resources: AppResources, holder: Holder
    ) -> None:
        rows = make_transactions(10_000)
        await seed_transactions(resources, holder, rows, window=WINDOW)
        before = await snapshot(resources, holder.account_id)
        counter_before = await counter_value(resources, holder.user_id)

        counts = await seed_transactions(resources, holder, list(reversed(rows)), window=WINDOW)

        assert counts == UpsertCounts(0, 0, 0)
        assert not counts.changed
        assert await snapshot(resources, holder.account_id) == before
        assert await counter_value(resources, holder.user_id) == counter_before

    async def test_changed_rows_are_modified_and_renumbered_others_untouched(
        self, resources: AppResources, holder: Holder
    ) -> None:
        rows = make_transactions(2_500)
        await seed_transactions(resources, holder, rows, window=WINDOW)
        before = await snapshot(resources, holder.account_id)
        edited = {
            i: changed(rows[i], amount=rows[i].amount + Decimal("0.01"))
            for i in range(0, 2_500, 100)
        }
        rows = [edited.get(i, row) for i, row in enumerate(rows)]

        counts = await seed_transactions(resources, holder, rows, window=WINDOW)

        assert counts == UpsertCounts(added=0, modified=25, removed=0)
        after = await snapshot(resources, holder.account_id)
        top = max(row["change_seq"] for row in before.values())
        for i, row in enumerate(rows):
            old, new = before[row.external_id], after[row.external_id]
            if i in edited:
                assert new["amount"] == old["amount"] + Decimal("0.01")
                assert new["change_seq"] > top
                assert new["created_seq"] == old["created_seq"]
                assert new["last_modified_at"] > old["last_modified_at"]
                assert new["first_seen_at"] == old["first_seen_at"]
                assert new["id"] == old["id"]
            else:
                assert new == old

    async def test_pending_row_that_posts_with_a_new_amount_is_one_modification(
        self, resources: AppResources, holder: Holder
    ) -> None:
        pending = make_transaction(
            "88190044172", status=TransactionStatus.PENDING, amount=Decimal("18.40")
        )
        await seed_transactions(resources, holder, [pending])

        counts = await seed_transactions(
            resources,
            holder,
            [changed(pending, status=TransactionStatus.POSTED, amount=Decimal("18.42"))],
        )

        assert counts == UpsertCounts(added=0, modified=1, removed=0)
        (row,) = (await snapshot(resources, holder.account_id)).values()
        assert row["status"] == "posted"
        assert row["amount"] == Decimal("18.42")

    async def test_rows_missing_from_the_window_are_soft_deleted_and_counted(
        self, resources: AppResources, holder: Holder
    ) -> None:
        rows = make_transactions(100)  # minute-spaced back from BASE_TIME
        await seed_transactions(resources, holder, rows)
        window = (BASE_TIME - timedelta(minutes=49), BASE_TIME)  # rows 0..49
        vanished = {"3", "10", "49"}
        outside = {"50", "99"}  # not in the window: absence means nothing
        kept = [r for r in rows[:50] if r.external_id not in vanished]

        counts = await seed_transactions(resources, holder, kept, window=window)

        assert counts == UpsertCounts(added=0, modified=0, removed=3)
        state = await snapshot(resources, holder.account_id)
        assert {k for k, row in state.items() if row["removed_at"] is not None} == vanished
        assert all(state[k]["removed_at"] is None for k in outside)
        # Removal is idempotent: the same fetch again removes nothing more.
        again = await seed_transactions(resources, holder, kept, window=window)
        assert again == UpsertCounts(0, 0, 0)

    async def test_reappearing_row_is_restored_as_a_modification(
        self, resources: AppResources, holder: Holder
    ) -> None:
        rows = make_transactions(5)
        await seed_transactions(resources, holder, rows, window=WINDOW)
        await seed_transactions(resources, holder, rows[1:], window=WINDOW)
        removed = (await snapshot(resources, holder.account_id))["0"]

        counts = await seed_transactions(resources, holder, rows, window=WINDOW)

        assert counts == UpsertCounts(added=0, modified=1, removed=0)
        restored = (await snapshot(resources, holder.account_id))["0"]
        assert removed["removed_at"] is not None
        assert restored["removed_at"] is None
        assert restored["id"] == removed["id"]
        assert restored["change_seq"] > removed["change_seq"]

    async def test_other_accounts_are_never_touched_by_a_window(
        self, resources: AppResources, holder: Holder
    ) -> None:
        other = await seed_account(resources, holder)
        await seed_transactions(resources, holder, make_transactions(10), account_id=other)

        counts = await seed_transactions(resources, holder, [], window=WINDOW)

        assert counts == UpsertCounts(0, 0, 0)
        assert all(r["removed_at"] is None for r in (await snapshot(resources, other)).values())

    async def test_duplicate_ids_in_one_call_keep_the_last(
        self, resources: AppResources, holder: Holder
    ) -> None:
        first = make_transaction("7", amount=Decimal("1.00"))
        last = changed(first, amount=Decimal("2.00"))

        counts = await seed_transactions(resources, holder, [first, last])

        assert counts == UpsertCounts(added=1, modified=0, removed=0)
        assert (await snapshot(resources, holder.account_id))["7"]["amount"] == Decimal("2.00")

    async def test_crash_between_batches_then_rerun_leaves_identical_data(
        self, resources: AppResources, holder: Holder
    ) -> None:
        rows = make_transactions(5_000)
        clean = await seed_account(resources, holder)
        await seed_transactions(resources, holder, rows, account_id=clean, window=WINDOW)
        # An earlier unit of work committed part of the data (e.g. a previous window).
        await seed_transactions(resources, holder, rows[:1_500])

        class Crash(RuntimeError):
            pass

        def crash_after_three_batches(done: int) -> None:
            if done >= 3_000:
                raise Crash

        with pytest.raises(Crash):
            async with session_scope(resources.session_factory) as session:
                await upsert_transactions(
                    session,
                    user_id=holder.user_id,
                    provider_id=holder.provider_id,
                    account_id=holder.account_id,
                    rows=rows,
                    window_start=WINDOW[0],
                    window_end=WINDOW[1],
                    on_batch=crash_after_three_batches,
                )
        counts = await seed_transactions(resources, holder, rows, window=WINDOW)

        assert counts == UpsertCounts(added=3_500, modified=0, removed=0)
        volatile = {
            "id",
            "account_id",
            "first_seen_at",
            "last_modified_at",
            "created_seq",
            "change_seq",
        }

        def comparable(state: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
            return {
                k: {c: v for c, v in row.items() if c not in volatile} for k, row in state.items()
            }

        resumed = await snapshot(resources, holder.account_id)
        assert len(resumed) == 5_000
        assert comparable(resumed) == comparable(await snapshot(resources, clean))
        async with session_scope(resources.session_factory) as session:
            total = (
                await session.execute(
                    select(func.count()).select_from(_t).where(_t.c.account_id == holder.account_id)
                )
            ).scalar_one()
        assert total == 5_000

    async def test_concurrent_writers_of_one_user_get_disjoint_change_numbers(
        self, resources: AppResources, holder: Holder
    ) -> None:
        second = await seed_account(resources, holder)

        await asyncio.gather(
            seed_transactions(resources, holder, make_transactions(1_500)),
            seed_transactions(resources, holder, make_transactions(1_500), account_id=second),
        )

        seqs = [r["change_seq"] for r in (await snapshot(resources, holder.account_id)).values()]
        seqs += [r["change_seq"] for r in (await snapshot(resources, second)).values()]
        assert sorted(seqs) == list(range(1, 3_001))

    async def test_one_window_with_new_changed_restored_unchanged_and_vanished_rows(
        self, resources: AppResources, holder: Holder
    ) -> None:
        # Every kind of row in one call and across batch boundaries: on PostgreSQL new rows
        # take the COPY path and the others the staged upsert, in the same batches.
        rows = make_transactions(1_200)
        await seed_transactions(resources, holder, rows, window=WINDOW)
        await seed_transactions(resources, holder, rows[:1_150], window=WINDOW)  # 50 removed
        before = await snapshot(resources, holder.account_id)
        edited = [changed(r, description="EDITED") for r in rows[:1_150:10]]  # 115 changed
        fresh = make_transactions(300, start=5_000)
        # 50 restored (1150…1199); the edited copies come last, so they win over the originals.
        window_rows = rows[1_100:1_200] + rows[:1_100] + fresh + edited
        # One row moved out of the window by the institution: still known, not removed.
        window_rows = [r for r in window_rows if r.external_id != "7"]

        async with session_scope(resources.session_factory) as session:
            counts = await upsert_transactions(
                session,
                user_id=holder.user_id,
                provider_id=holder.provider_id,
                account_id=holder.account_id,
                rows=[*window_rows, changed(rows[7], posted_at=WINDOW[0] - timedelta(days=1))],
                window_start=WINDOW[0],
                window_end=WINDOW[1],
                batch_size=256,
            )

        assert counts == UpsertCounts(added=300, modified=115 + 50 + 1, removed=0)
        after = await snapshot(resources, holder.account_id)
        assert len(after) == 1_500 and all(r["removed_at"] is None for r in after.values())
        assert {k for k, r in after.items() if r["description"] == "EDITED"} == {
            r.external_id for r in edited
        }
        untouched = set(before) - {r.external_id for r in edited} - {"7"}
        untouched -= {str(i) for i in range(1_150, 1_200)}
        assert all(after[k] == before[k] for k in untouched)
        seqs = [r["change_seq"] for r in after.values()]
        assert len(set(seqs)) == len(seqs)
        assert await counter_value(resources, holder.user_id) == max(seqs)

    async def test_raw_payload_is_stored_with_exact_decimal_strings(
        self, resources: AppResources, holder: Holder
    ) -> None:
        raw = {
            "activityId": 88145023391,
            "netAmount": Decimal("-1902.520"),
            "transferItems": [{"amount": Decimal("1E+2"), "price": Decimal("0.00000001")}],
            "description": 'caf\u00e9 "quoted"',
        }
        await seed_transactions(resources, holder, [make_transaction("1", raw=raw)])

        (row,) = (await snapshot(resources, holder.account_id)).values()
        assert row["raw"] == {
            "activityId": 88145023391,
            "netAmount": "-1902.520",
            "transferItems": [{"amount": "100", "price": "0.00000001"}],
            "description": 'caf\u00e9 "quoted"',
        }

    async def test_concurrent_writers_of_one_account_neither_fail_nor_duplicate(
        self, resources: AppResources, holder: Holder
    ) -> None:
        # A worker whose lease expired may still be writing while its successor starts: the
        # account lock (PostgreSQL) or the write lock (SQLite) serialises them.
        rows = make_transactions(1_500)

        first, second = await asyncio.gather(
            seed_transactions(resources, holder, rows[:1_000], window=None),
            seed_transactions(resources, holder, rows[500:], window=None),
        )

        assert first.added + second.added == 1_500
        assert first.modified == second.modified == 0
        state = await snapshot(resources, holder.account_id)
        assert len(state) == 1_500
        assert sorted(r["change_seq"] for r in state.values()) == list(range(1, 1_501))

    async def test_batch_size_outside_limits_is_refused(
        self, resources: AppResources, holder: Holder
    ) -> None:
        async with session_scope(resources.session_factory) as session:
            with pytest.raises(ValueError, match="batch_size"):
                await upsert_transactions(
                    session,
                    user_id=holder.user_id,
                    provider_id=holder.provider_id,
                    account_id=holder.account_id,
                    rows=[],
                    window_start=None,
                    window_end=None,
                    batch_size=5_000,
                )

    async def test_purging_a_provider_soft_deletes_every_live_row(
        self, resources: AppResources, holder: Holder
    ) -> None:
        await seed_transactions(resources, holder, make_transactions(30))
        async with session_scope(resources.session_factory) as session:
            removed = await remove_provider_transactions(
                session, user_id=holder.user_id, provider_id=holder.provider_id
            )
        assert removed == 30
        state = await snapshot(resources, holder.account_id)
        assert all(row["removed_at"] is not None for row in state.values())


class TestReserveChangeNumbers:
    async def test_numbers_are_consecutive_per_user(
        self, resources: AppResources, holder: Holder
    ) -> None:
        async with session_scope(resources.session_factory) as session:
            first = await reserve_change_numbers(session, user_id=holder.user_id, count=5)
            second = await reserve_change_numbers(session, user_id=holder.user_id, count=3)
        assert (first, second) == (5, 8)


class TestUpsertAccounts:
    async def test_same_hash_updates_in_place_and_missing_accounts_deactivate(
        self, resources: AppResources, holder: Holder
    ) -> None:
        kept = make_account(name="Old name")
        gone = make_account()
        async with session_scope(resources.session_factory) as session:
            first = await upsert_accounts(
                session,
                user_id=holder.user_id,
                provider_id=holder.provider_id,
                accounts=[kept, gone],
            )
        async with session_scope(resources.session_factory) as session:
            second = await upsert_accounts(
                session,
                user_id=holder.user_id,
                provider_id=holder.provider_id,
                accounts=[make_account(kept.external_id, name="New name")],
            )
            rows = {
                row.external_id: row
                for row in (
                    await session.execute(
                        select(Account).where(Account.provider_id == holder.provider_id)
                    )
                ).scalars()
            }

        assert second[kept.external_id] == first[kept.external_id]
        assert rows[kept.external_id].name == "New name"
        assert rows[kept.external_id].is_active
        assert not rows[gone.external_id].is_active
        # The builder's account (not in this sync) was deactivated as well.
        assert sum(row.is_active for row in rows.values()) == 1

    async def test_another_users_provider_cannot_take_an_account_over(
        self, resources: AppResources, holder: Holder
    ) -> None:
        intruder = await seed_holder(resources)
        async with session_scope(resources.session_factory) as session:
            account = await session.get(Account, holder.account_id)
            assert account is not None
            external_id = account.external_id
        with pytest.raises(ValueError, match="another user"):
            async with session_scope(resources.session_factory) as session:
                await upsert_accounts(
                    session,
                    user_id=intruder.user_id,
                    provider_id=holder.provider_id,
                    accounts=[make_account(external_id)],
                )


class TestSnapshotBalances:
    async def test_a_snapshot_is_inserted_only_when_a_value_changes(
        self, resources: AppResources, holder: Holder
    ) -> None:
        day = timedelta(days=1)
        balances = [
            make_balance("17337.67", cash="3120.55"),
            make_balance("17337.670", cash="3120.5500"),  # same money, other scale
            make_balance("17337.68", cash="3120.55"),
        ]
        inserted = []
        for i, balance in enumerate(balances):
            async with session_scope(resources.session_factory) as session:
                inserted.append(
                    await snapshot_balances(
                        session, balances={holder.account_id: balance}, as_of=BASE_TIME + i * day
                    )
                )
        async with session_scope(resources.session_factory) as session:
            rows = (
                (
                    await session.execute(
                        select(BalanceSnapshot)
                        .where(BalanceSnapshot.account_id == holder.account_id)
                        .order_by(BalanceSnapshot.as_of)
                    )
                )
                .scalars()
                .all()
            )

        assert inserted == [1, 0, 1]
        assert [r.current for r in rows] == [Decimal("17337.67"), Decimal("17337.68")]
        assert [r.as_of for r in rows] == [BASE_TIME, BASE_TIME + 2 * day]


class TestReplacePositions:
    async def test_holdings_become_exactly_the_given_set(
        self, resources: AppResources, holder: Holder
    ) -> None:
        async def replace(positions: list[Any]) -> Any:
            async with session_scope(resources.session_factory) as session:
                return await replace_positions(
                    session,
                    user_id=holder.user_id,
                    account_id=holder.account_id,
                    positions=positions,
                    as_of=BASE_TIME,
                )

        aapl = make_position("AAPL", "25", "4563.75")
        voo = make_position("VOO", "20", "8403.00")
        first = await replace([aapl, voo])
        unchanged = await replace([aapl, voo])
        second = await replace([make_position("AAPL", "30", "5476.50")])

        async with session_scope(resources.session_factory) as session:
            rows = (
                (
                    await session.execute(
                        select(Position).where(Position.account_id == holder.account_id)
                    )
                )
                .scalars()
                .all()
            )
        assert (first.added, unchanged.added + unchanged.modified + unchanged.removed) == (2, 0)
        assert (second.modified, second.removed) == (1, 1)
        assert [(r.symbol, r.quantity, r.market_value) for r in rows] == [
            ("AAPL", Decimal("30"), Decimal("5476.50"))
        ]
