"""Financial data: accounts, balance snapshots, positions, transactions, sync runs, change counters.

Every row carries the owner's `user_id` (denormalised from its provider) so each read is scoped
by one indexed equality. Money and quantities are `ExactDecimal` (exact on both backends);
timestamps are `UTCDateTime`. The plain account number is never stored: `external_id` is the
institution's opaque account hash and `masked_number` keeps only the last four characters.

The frozen `*Data` dataclasses at the end are the provider-agnostic records a provider's mapping
layer produces and the sync store (`services.financial.repository`) writes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from json.encoder import encode_basestring as _quote
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Date, Index, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from dashtam.core.types import MONEY_SCALE, ExactDecimal, UTCDateTime, utcnow
from dashtam.models.base import Timestamps, UUIDPrimaryKey

EXTERNAL_ID_MAX_LENGTH = 128
SYMBOL_MAX_LENGTH = 64
DESCRIPTION_MAX_LENGTH = 500
NAME_MAX_LENGTH = 200
#: Hex SHA-256 digests are exactly 64 characters.
CONTENT_HASH_LENGTH = 64

#: Like `base.JSONType`, but a Python None is stored as SQL NULL, not the JSON literal `null`.
_RawJSON = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

# Partial-index predicates (both backends support them); the list endpoints only read live rows.
_LIVE = text("removed_at IS NULL")


class AccountType(StrEnum):
    """What kind of account this is, provider-agnostic."""

    CASH = "cash"
    MARGIN = "margin"
    IRA = "ira"
    ROTH_IRA = "roth_ira"
    OTHER = "other"


class TransactionStatus(StrEnum):
    """Where a transaction stands at the institution."""

    PENDING = "pending"
    POSTED = "posted"
    CANCELLED = "cancelled"


class TransactionType(StrEnum):
    """Provider-agnostic transaction families (`subtype` keeps the institution's detail)."""

    TRADE = "trade"
    DIVIDEND = "dividend"
    INTEREST = "interest"
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    TRANSFER = "transfer"
    FEE = "fee"
    OTHER = "other"


class SyncTrigger(StrEnum):
    """What started a sync run."""

    MANUAL = "manual"
    SCHEDULED = "scheduled"
    CONNECT = "connect"


class SyncStatus(StrEnum):
    """Life cycle of a sync run."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# --- tables ---------------------------------------------------------------------------------


class Account(UUIDPrimaryKey, Timestamps, table=True):
    """One institution account of a connection; unique per (provider, external id)."""

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("provider_id", "external_id"),
        Index("ix_accounts_user_id_provider_id", "user_id", "provider_id"),
    )

    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", nullable=False)
    provider_id: uuid.UUID = Field(foreign_key="providers.id", ondelete="CASCADE", nullable=False)
    external_id: str = Field(max_length=EXTERNAL_ID_MAX_LENGTH, nullable=False)
    masked_number: str | None = Field(default=None, max_length=8)
    name: str = Field(max_length=NAME_MAX_LENGTH, nullable=False)
    type: str = Field(max_length=16, nullable=False)
    currency: str = Field(default="USD", max_length=3, nullable=False)
    is_active: bool = Field(default=True, nullable=False)
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class BalanceSnapshot(UUIDPrimaryKey, table=True):
    """An account's balances at one instant; a new row only when a value changed."""

    __tablename__ = "balance_snapshots"
    __table_args__ = (Index("ix_balance_snapshots_account_id_as_of", "account_id", "as_of"),)

    account_id: uuid.UUID = Field(foreign_key="accounts.id", ondelete="CASCADE", nullable=False)
    as_of: datetime = Field(sa_type=UTCDateTime, nullable=False)
    currency: str = Field(default="USD", max_length=3, nullable=False)
    current: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    available: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    cash: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    buying_power: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    liquidation_value: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    long_market_value: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    short_market_value: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    money_market_fund: Decimal | None = Field(default=None, sa_type=ExactDecimal)


class Position(UUIDPrimaryKey, table=True):
    """A current holding of an account, keyed by `position_key` (symbol, else CUSIP)."""

    __tablename__ = "positions"
    __table_args__ = (
        UniqueConstraint("account_id", "position_key"),
        Index("ix_positions_user_id_symbol", "user_id", "symbol"),
    )

    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", nullable=False)
    account_id: uuid.UUID = Field(foreign_key="accounts.id", ondelete="CASCADE", nullable=False)
    position_key: str = Field(max_length=SYMBOL_MAX_LENGTH, nullable=False)
    symbol: str = Field(max_length=SYMBOL_MAX_LENGTH, nullable=False)
    cusip: str | None = Field(default=None, max_length=16)
    asset_type: str = Field(max_length=32, nullable=False)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX_LENGTH)
    quantity: Decimal = Field(sa_type=ExactDecimal, nullable=False)
    average_price: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    market_value: Decimal = Field(sa_type=ExactDecimal, nullable=False)
    cost_basis: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    unrealized_pl: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    currency: str = Field(default="USD", max_length=3, nullable=False)
    as_of: datetime = Field(sa_type=UTCDateTime, nullable=False)


class Transaction(UUIDPrimaryKey, table=True):
    """One institution transaction; unique per (account, external id); soft-deleted.

    `created_seq` and `change_seq` are numbers from the owner's change counter
    (`FinancialChangeCounter`): `change_seq` is the number of the row's latest change (insert,
    content change, removal or reappearance) and orders the change feed; `created_seq` is the
    number under which the row (re)entered the visible set, so the feed can tell added from
    modified. `content_hash` covers the normalised fields only, so an upsert that brings
    nothing new writes nothing.
    """

    __tablename__ = "transactions"
    __table_args__ = (
        UniqueConstraint("account_id", "external_id"),
        # Newest-first keyset pages over (posted_at, id), per user and per account, live rows
        # only (both backends scan a B-tree backwards, so ascending columns serve DESC order).
        Index(
            "ix_transactions_user_id_posted_at_id",
            "user_id",
            "posted_at",
            "id",
            postgresql_where=_LIVE,
            sqlite_where=_LIVE,
        ),
        Index(
            "ix_transactions_account_id_posted_at_id",
            "account_id",
            "posted_at",
            "id",
            postgresql_where=_LIVE,
            sqlite_where=_LIVE,
        ),
        # The change feed walks one user's changes in counter order.
        Index("ix_transactions_user_id_change_seq", "user_id", "change_seq", unique=True),
    )

    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", nullable=False)
    provider_id: uuid.UUID = Field(foreign_key="providers.id", ondelete="CASCADE", nullable=False)
    account_id: uuid.UUID = Field(foreign_key="accounts.id", ondelete="CASCADE", nullable=False)
    external_id: str = Field(max_length=EXTERNAL_ID_MAX_LENGTH, nullable=False)
    posted_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    trade_date: date | None = Field(default=None, sa_type=Date)
    settlement_date: date | None = Field(default=None, sa_type=Date)
    type: str = Field(max_length=16, nullable=False)
    subtype: str | None = Field(default=None, max_length=32)
    status: str = Field(max_length=16, nullable=False)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX_LENGTH)
    amount: Decimal = Field(sa_type=ExactDecimal, nullable=False)
    currency: str = Field(default="USD", max_length=3, nullable=False)
    symbol: str | None = Field(default=None, max_length=SYMBOL_MAX_LENGTH)
    quantity: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    price: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    fees: Decimal = Field(default=Decimal(0), sa_type=ExactDecimal, nullable=False)
    raw: dict[str, Any] | None = Field(default=None, sa_column=Column(_RawJSON, nullable=True))
    content_hash: str = Field(max_length=CONTENT_HASH_LENGTH, nullable=False)
    first_seen_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    last_modified_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    removed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_seq: int = Field(sa_type=BigInteger, nullable=False)
    change_seq: int = Field(sa_type=BigInteger, nullable=False)


class FinancialChangeCounter(UUIDPrimaryKey, table=True):
    """Per-user counter that numbers transaction changes in commit order.

    Writers bump it with one atomic upsert inside their transaction; the row lock (PostgreSQL)
    or the database write lock (SQLite) holds other writers of the same user until commit, so
    a reader never sees a higher number commit before a lower one.
    """

    __tablename__ = "financial_change_counters"
    __table_args__ = (UniqueConstraint("user_id"),)

    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", nullable=False)
    value: int = Field(default=0, sa_type=BigInteger, nullable=False)


class SyncRun(UUIDPrimaryKey, Timestamps, table=True):
    """One sync of a provider: trigger, life cycle, lease, outcome counts and window.

    At most one run per provider is `queued` or `running` (partial unique index): the database
    guard behind the sync lock. A run whose `lease_expires_at` has passed is presumed dead
    (its worker was killed) and may be re-queued; every run is idempotent.
    """

    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("ix_sync_runs_provider_id_created_at", "provider_id", "created_at"),
        Index(
            "ux_sync_runs_provider_id_active",
            "provider_id",
            unique=True,
            postgresql_where=text("status IN ('queued', 'running')"),
            sqlite_where=text("status IN ('queued', 'running')"),
        ),
        Index("ix_sync_runs_status_lease_expires_at", "status", "lease_expires_at"),
    )

    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", nullable=False)
    provider_id: uuid.UUID = Field(foreign_key="providers.id", ondelete="CASCADE", nullable=False)
    trigger: str = Field(max_length=16, nullable=False)
    status: str = Field(default=SyncStatus.QUEUED.value, max_length=16, nullable=False)
    attempt: int = Field(default=0, nullable=False)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    accounts: int = Field(default=0, nullable=False)
    added: int = Field(default=0, nullable=False)
    modified: int = Field(default=0, nullable=False)
    removed: int = Field(default=0, nullable=False)
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, max_length=500)
    window_start: datetime | None = Field(default=None, sa_type=UTCDateTime)
    window_end: datetime | None = Field(default=None, sa_type=UTCDateTime)


# --- normalised records (what a provider mapping produces, what the sync store writes) ------


@dataclass(frozen=True)
class AccountData:
    """One account as the institution describes it (no plain account number)."""

    external_id: str
    name: str
    type: AccountType
    masked_number: str | None = None
    currency: str = "USD"


@dataclass(frozen=True)
class BalanceData:
    """An account's balances at one instant; any field the institution omits is None."""

    current: Decimal | None
    available: Decimal | None = None
    cash: Decimal | None = None
    buying_power: Decimal | None = None
    liquidation_value: Decimal | None = None
    long_market_value: Decimal | None = None
    short_market_value: Decimal | None = None
    money_market_fund: Decimal | None = None
    currency: str = "USD"

    def values(self) -> tuple[Decimal | None, ...]:
        """The compared values, in a fixed order (used to skip unchanged snapshots)."""
        return (
            self.current,
            self.available,
            self.cash,
            self.buying_power,
            self.liquidation_value,
            self.long_market_value,
            self.short_market_value,
            self.money_market_fund,
        )


@dataclass(frozen=True)
class PositionData:
    """One holding. `quantity` is long minus short; `position_key` is unique per account."""

    position_key: str
    symbol: str
    asset_type: str
    quantity: Decimal
    market_value: Decimal
    cusip: str | None = None
    description: str | None = None
    average_price: Decimal | None = None
    cost_basis: Decimal | None = None
    unrealized_pl: Decimal | None = None
    currency: str = "USD"


@dataclass(frozen=True)
class AccountSnapshot:
    """Everything one account payload yields: the account, its balances and its holdings.

    `positions` is None when the payload carried no positions (asked without them), which the
    store must not mistake for "everything sold".
    """

    account: AccountData
    balance: BalanceData
    positions: tuple[PositionData, ...] | None


@dataclass(frozen=True)
class TransactionData:
    """One normalised transaction. `amount` is signed: positive = money into the account."""

    external_id: str
    posted_at: datetime
    type: TransactionType
    status: TransactionStatus
    amount: Decimal
    subtype: str | None = None
    trade_date: date | None = None
    settlement_date: date | None = None
    description: str | None = None
    currency: str = "USD"
    symbol: str | None = None
    quantity: Decimal | None = None
    price: Decimal | None = None
    fees: Decimal = Decimal(0)
    raw: dict[str, Any] | None = field(default=None, compare=False)
    #: SHA-256 over the normalised fields (never `raw`, whose volatile members such as an
    #: instrument's closing price would make every sync look like a change).
    content_hash: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if self.posted_at.tzinfo is None:
            raise ValueError("posted_at must be timezone-aware")
        object.__setattr__(self, "content_hash", transaction_content_hash(self))


def _canonical_decimal(value: Decimal | None) -> str | None:
    # Stored values have 8 places, so 1.5 and 1.50000000 are the same money: hash them alike.
    if value is None:
        return None
    return str(value.quantize(_HASH_QUANTUM))


_HASH_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)


def transaction_content_hash(row: TransactionData) -> str:
    """A stable digest of a transaction's normalised fields.

    Independent of the payload's key order and of the order of its transfer items (the mapping
    reduces those to fields first); decimals are compared at storage precision and times in UTC.

    The digest is SHA-256 of `json.dumps(fields, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`. That text is assembled directly (keys in sorted order, each string
    quoted by json's own C escaper): the same bytes, at a fraction of the cost of building and
    sorting a dict per row. Anything unexpected (a non-string field) takes the general path.
    """
    q = _quote  # quoted inline: a helper call per field costs as much as the quoting
    quantum = _HASH_QUANTUM
    try:
        amount, fees, price, quantity = row.amount, row.fees, row.price, row.quantity
        description, subtype, symbol = row.description, row.subtype, row.symbol
        settled, traded = row.settlement_date, row.trade_date
        encoded = (
            f'{{"amount":{q(str(amount.quantize(quantum)))}'
            f',"currency":{q(row.currency)}'
            f',"description":{"null" if description is None else q(description)}'
            f',"external_id":{q(row.external_id)}'
            f',"fees":{"null" if fees is None else q(str(fees.quantize(quantum)))}'
            f',"posted_at":{q(row.posted_at.astimezone(UTC).isoformat())}'
            f',"price":{"null" if price is None else q(str(price.quantize(quantum)))}'
            f',"quantity":{"null" if quantity is None else q(str(quantity.quantize(quantum)))}'
            f',"settlement_date":{q(settled.isoformat()) if settled else "null"}'
            f',"status":{q(str(row.status))}'
            f',"subtype":{"null" if subtype is None else q(subtype)}'
            f',"symbol":{"null" if symbol is None else q(symbol)}'
            f',"trade_date":{q(traded.isoformat()) if traded else "null"}'
            f',"type":{q(str(row.type))}}}'
        )
    except (TypeError, AttributeError):
        # Not the types the fields declare (e.g. a None amount): the general route decides.
        encoded = _canonical_json(row)
    return hashlib.sha256(encoded.encode()).hexdigest()


def _canonical_json(row: TransactionData) -> str:
    """The canonical text by the general route (the definition the fast path reproduces)."""
    canonical = {
        "external_id": row.external_id,
        "posted_at": row.posted_at.astimezone(UTC).isoformat(),
        "type": str(row.type),
        "subtype": row.subtype,
        "status": str(row.status),
        "trade_date": row.trade_date.isoformat() if row.trade_date else None,
        "settlement_date": row.settlement_date.isoformat() if row.settlement_date else None,
        "description": row.description,
        "amount": _canonical_decimal(row.amount),
        "currency": row.currency,
        "symbol": row.symbol,
        "quantity": _canonical_decimal(row.quantity),
        "price": _canonical_decimal(row.price),
        "fees": _canonical_decimal(row.fees),
    }
    return json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
