"""The PostgreSQL COPY records carry exactly what the column types' bind processors produce."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from dashtam.models.financial import TransactionData, TransactionStatus, TransactionType
from dashtam.services.financial.repository import (
    _COPY_COLUMNS,
    _copy_records,
    _transactions,
    raw_payload_json,
)

DIALECT = asyncpg_dialect()
NOW = datetime(2025, 6, 16, 12, 0, tzinfo=UTC)
IDS = uuid.uuid4()


def row(**changes: object) -> TransactionData:
    values: dict[str, object] = {
        "external_id": "1",
        "posted_at": NOW,
        "type": TransactionType.TRADE,
        "status": TransactionStatus.POSTED,
        "amount": Decimal("-1902.52"),
        "quantity": Decimal("10"),
        "price": Decimal("190.250000005"),
        "fees": Decimal("0.000000015"),
        "raw": {"netAmount": Decimal("-1902.52")},
    }
    values.update(changes)
    return TransactionData(**values)  # type: ignore[arg-type]


def records(*rows: TransactionData) -> list[dict[str, object]]:
    made = _copy_records(
        DIALECT,
        list(rows),
        user_id=IDS,
        provider_id=IDS,
        account_id=IDS,
        first_seq=7,
        now=NOW,
    )
    return [dict(zip(_COPY_COLUMNS, record, strict=True)) for record in made]


def processed(name: str, value: object) -> object:
    process = _transactions.c[name].type.dialect_impl(DIALECT).bind_processor(DIALECT)
    return value if process is None or value is None else process(value)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"quantity": None, "price": None},
        {"amount": Decimal("12345678901234.123456785"), "fees": Decimal("1E+5")},
        {"posted_at": datetime(2025, 6, 16, 7, tzinfo=timezone(timedelta(hours=-5)))},
    ],
)
def test_values_are_what_the_column_types_would_bind(changes: dict[str, object]) -> None:
    source = row(**changes)
    (record,) = records(source)

    for name in ("amount", "quantity", "price", "fees", "posted_at"):
        assert record[name] == processed(name, getattr(source, name)), name
        assert str(record[name]) == str(processed(name, getattr(source, name))), name
    assert record["raw"] == raw_payload_json(source.raw or {})
    assert (record["created_seq"], record["change_seq"]) == (7, 7)
    assert record["first_seen_at"] == record["last_modified_at"] == NOW
    assert isinstance(record["id"], uuid.UUID) and record["id"].version == 4


def test_non_finite_money_is_refused_as_by_the_column_type() -> None:
    with pytest.raises(ValueError, match="finite"):
        records(row(quantity=Decimal("NaN")))


def test_every_row_gets_its_own_id_and_number() -> None:
    made = records(row(external_id="1"), row(external_id="2"), row(external_id="3"))
    assert len({r["id"] for r in made}) == 3
    assert [r["change_seq"] for r in made] == [7, 8, 9]
