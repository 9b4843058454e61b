"""Money and time columns are exact and UTC on both backends (ARCHITECTURE §10)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from dashtam.core.types import ExactDecimal, UTCDateTime

_metadata = MetaData()
_probe = Table(
    "type_probe",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("tag", String(40)),
    Column("amount", ExactDecimal()),
    Column("at", UTCDateTime()),
)
# ±92 billion at 8 places is the embedded store's range; money needs far less.
_money = st.decimals(
    min_value=Decimal("-92000000000"),
    max_value=Decimal("92000000000"),
    places=8,
    allow_nan=False,
    allow_infinity=False,
)


@pytest.fixture
async def probe(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    async with engine.begin() as conn:
        await conn.run_sync(_metadata.create_all)
    yield engine
    async with engine.begin() as conn:
        await conn.run_sync(_metadata.drop_all)


class TestExactDecimal:
    async def test_large_value_round_trips_exactly(self, probe: AsyncEngine) -> None:
        value = Decimal("12345678901.12345678")
        async with probe.begin() as conn:
            await conn.execute(insert(_probe).values(id=1, amount=value))
            stored = (await conn.execute(select(_probe.c.amount))).scalar_one()
        assert stored == value
        assert isinstance(stored, Decimal)

    async def test_sum_and_comparison_are_exact_in_sql(self, probe: AsyncEngine) -> None:
        values = [Decimal("0.1"), Decimal("0.2"), Decimal("-0.3"), Decimal("1000000.00000001")]
        async with probe.begin() as conn:
            await conn.execute(
                insert(_probe), [{"id": i, "amount": v} for i, v in enumerate(values)]
            )
            total = (await conn.execute(select(func.sum(_probe.c.amount)))).scalar_one()
            above = (
                await conn.execute(select(func.count()).where(_probe.c.amount > Decimal("0.15")))
            ).scalar_one()
        assert Decimal(total) == sum(values)
        assert above == 2

    async def test_more_places_than_scale_are_rounded_identically(self, probe: AsyncEngine) -> None:
        async with probe.begin() as conn:
            await conn.execute(insert(_probe).values(id=1, amount=Decimal("1.123456785")))
            stored = (await conn.execute(select(_probe.c.amount))).scalar_one()
        assert stored == Decimal("1.12345678")

    async def test_non_finite_values_are_rejected(self, probe: AsyncEngine) -> None:
        async with probe.begin() as conn:
            with pytest.raises(StatementError):
                await conn.execute(insert(_probe).values(id=1, amount=Decimal("NaN")))

    @settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(value=_money)
    async def test_property_any_money_value_round_trips(
        self, probe: AsyncEngine, value: Decimal
    ) -> None:
        row_id = uuid.uuid4().int % 2**31
        async with probe.begin() as conn:
            await conn.execute(insert(_probe).values(id=row_id, amount=value))
            stored = (
                await conn.execute(select(_probe.c.amount).where(_probe.c.id == row_id))
            ).scalar_one()
        assert stored == value


class TestUTCDateTime:
    async def test_aware_values_come_back_as_utc(self, probe: AsyncEngine) -> None:
        tehran = timezone(timedelta(hours=3, minutes=30))
        moment = datetime(2026, 3, 20, 12, 0, 0, 123456, tzinfo=tehran)
        async with probe.begin() as conn:
            await conn.execute(insert(_probe).values(id=1, at=moment))
            stored = (await conn.execute(select(_probe.c.at))).scalar_one()
        assert stored == moment
        assert stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
        assert stored.hour == 8 and stored.minute == 30

    async def test_naive_values_are_rejected(self, probe: AsyncEngine) -> None:
        async with probe.begin() as conn:
            with pytest.raises(StatementError, match="naive datetime"):
                await conn.execute(insert(_probe).values(id=1, at=datetime(2026, 1, 1)))

    async def test_ordering_follows_instants_not_local_clock(self, probe: AsyncEngine) -> None:
        early_local = datetime(2026, 1, 1, 10, 0, tzinfo=timezone(timedelta(hours=5)))  # 05:00Z
        late_utc = datetime(2026, 1, 1, 6, 0, tzinfo=UTC)
        async with probe.begin() as conn:
            await conn.execute(
                insert(_probe),
                [
                    {"id": 1, "tag": "late", "at": late_utc},
                    {"id": 2, "tag": "early", "at": early_local},
                ],
            )
            tags = (await conn.execute(select(_probe.c.tag).order_by(_probe.c.at))).scalars().all()
        assert tags == ["early", "late"]
