"""The transactions benchmark's pure helpers: row generation, the reference SQL, p50 targets."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from bench.reference.transactions import LIST_PARAMS, list_sql
from bench.scenarios.base import Target
from bench.scenarios.transactions import (
    COPY_COLUMNS,
    HISTORY,
    SCENARIOS,
    transaction_rows,
)

from dashtam.models.financial import Transaction

NOW = datetime(2025, 1, 1, tzinfo=UTC)
USER, PROVIDER = uuid.uuid4(), uuid.uuid4()
ACCOUNTS = [uuid.uuid4(), uuid.uuid4()]


def _rows(count: int, **kwargs: object) -> list[dict[str, object]]:
    rows = transaction_rows(
        count, user_id=USER, provider_id=PROVIDER, account_ids=ACCOUNTS, now=NOW, **kwargs
    )
    return [dict(zip(COPY_COLUMNS, row, strict=True)) for row in rows]


class TestTransactionRows:
    def test_columns_cover_every_not_null_column_of_the_table(self) -> None:
        table = Transaction.__table__  # type: ignore[attr-defined]
        assert set(COPY_COLUMNS) <= set(table.c.keys())
        required = {c.name for c in table.c if not c.nullable}
        assert required <= set(COPY_COLUMNS)

    def test_required_values_are_set_and_keys_unique(self) -> None:
        table = Transaction.__table__  # type: ignore[attr-defined]
        rows = _rows(500)
        for row in rows:
            for column in table.c:
                if not column.nullable:
                    assert row[column.name] is not None, column.name
        assert len({r["id"] for r in rows}) == 500
        assert len({(r["account_id"], r["external_id"]) for r in rows}) == 500
        assert sorted(r["change_seq"] for r in rows) == list(range(1, 501))
        assert {r["account_id"] for r in rows} == set(ACCOUNTS)
        assert all(len(r["content_hash"]) == 64 for r in rows)  # type: ignore[arg-type]

    def test_posted_at_spreads_over_the_history_newest_last(self) -> None:
        rows = _rows(1000)
        times = [r["posted_at"] for r in rows]
        assert times == sorted(times)
        assert times[-1] < NOW
        assert NOW - times[0] == HISTORY
        assert times[-1] - times[0] > HISTORY - timedelta(days=3)

    def test_statuses_are_mixed_and_some_rows_removed(self) -> None:
        rows = _rows(2000)
        statuses = Counter(r["status"] for r in rows)
        assert set(statuses) == {"posted", "pending", "cancelled"}
        assert statuses["posted"] / len(rows) == pytest.approx(0.9, abs=0.01)
        removed = sum(r["removed_at"] is not None for r in rows)
        assert 0 < removed < len(rows) * 0.02

    def test_start_resumes_the_same_sequence(self) -> None:
        tail = _rows(100, start=90)
        assert [r["external_id"] for r in tail] == [f"bench-tx-{n}" for n in range(90, 100)]

    def test_rejects_naive_now_and_empty_input(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            list(
                transaction_rows(
                    1,
                    user_id=USER,
                    provider_id=PROVIDER,
                    account_ids=ACCOUNTS,
                    now=datetime(2025, 1, 1),
                )
            )
        with pytest.raises(ValueError, match="at least one row"):
            list(transaction_rows(1, user_id=USER, provider_id=PROVIDER, account_ids=[], now=NOW))


class TestReferenceSql:
    def test_same_filter_order_and_limit_as_the_dashtam_query(self) -> None:
        sql = " ".join(list_sql().split())
        assert LIST_PARAMS == ("user_id", "status", "limit")
        assert "FROM transactions" in sql
        assert "transactions.user_id = $1" in sql
        assert "transactions.removed_at IS NULL" in sql
        assert "transactions.status = $2" in sql
        assert "ORDER BY transactions.posted_at DESC, transactions.id DESC LIMIT $3" in sql


class TestP50Target:
    def test_describe_and_scenarios(self) -> None:
        assert Target(max_p50_ratio=1.5).describe() == "p50 ratio <= 1.50"
        by_name = {s.name: s for s in SCENARIOS}
        assert by_name["transactions_list_1m_vs_10k"].target == Target(max_p50_ratio=1.5)
        assert by_name["transactions_list_vs_asyncpg"].target == Target(min_rps_ratio=0.5)
