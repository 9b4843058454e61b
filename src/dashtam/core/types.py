"""Column types that behave identically on PostgreSQL and SQLite.

SQLite has no exact decimal and no timezone-aware timestamp: `Numeric` silently becomes a float
and aware datetimes come back naive. These decorators keep money exact and time in UTC on both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Numeric
from sqlalchemy.types import TypeDecorator, TypeEngine

MONEY_SCALE = 8
#: Largest scaled integer a SQLite INTEGER holds (about ±92 billion at 8 decimals).
_SQLITE_MAX = 2**63 - 1


def utcnow() -> datetime:
    """Current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    Naive datetimes are rejected on write (they are a bug: we cannot know their zone); aware
    ones are converted to UTC. On SQLite the value is stored as naive UTC text and UTC is
    re-attached on read; on PostgreSQL it is `TIMESTAMPTZ`.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ValueError("naive datetime: timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def to_decimal(value: Any) -> Decimal:
    """Convert a number-like value to `Decimal` exactly (floats via their shortest repr)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    try:
        return Decimal(value)
    except (InvalidOperation, TypeError) as exc:
        raise ValueError(f"not a decimal number: {value!r}") from exc


class ExactDecimal(TypeDecorator[Decimal]):
    """An exact decimal with 8 fractional digits on both backends.

    PostgreSQL: `NUMERIC(28, 8)`. SQLite: a BIGINT holding the value times 10^8, so ordering,
    comparisons and `SUM` in SQL stay exact (range about ±92 billion). Values are quantized to
    8 places on write on both backends, so what comes back is identical everywhere.
    """

    impl = Numeric(28, MONEY_SCALE)
    cache_ok = True
    _quantum = Decimal(1).scaleb(-MONEY_SCALE)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(28, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        number = to_decimal(value)
        if not number.is_finite():
            raise ValueError("decimal value must be finite")
        quantized = number.quantize(self._quantum)
        if dialect.name == "sqlite":
            scaled = int(quantized.scaleb(MONEY_SCALE))
            if abs(scaled) > _SQLITE_MAX:
                raise ValueError("decimal value out of range for the embedded store")
            return scaled
        return quantized

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-MONEY_SCALE).quantize(self._quantum)
        return to_decimal(value).quantize(self._quantum)

    def coerce_compared_value(self, op: Any, value: Any) -> TypeEngine[Any]:
        # Literals compared against this column must go through the same scaling.
        return self
