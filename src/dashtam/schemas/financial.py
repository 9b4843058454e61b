"""Request and response models of the financial data API: accounts, balances, positions,
transactions, the change feed and the portfolio.

Money and quantities are `Decimal` end to end and serialised as JSON strings (`"1902.52"`),
always next to an ISO 4217 `currency`; timestamps are RFC 3339 UTC.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from dashtam.models.financial import AccountType, TransactionStatus, TransactionType

#: Largest magnitude a money filter accepts: the embedded store's exact range (±92 billion).
MONEY_FILTER_LIMIT = Decimal("90000000000")
_TWO_PLACES = Decimal("0.01")


def format_money(value: Decimal) -> str:
    """`1902.5` -> `"1902.50"`; more places are kept (`"0.00012345"`), never an exponent."""
    normalized = value.normalize()
    if normalized == 0:
        return "0.00"
    exponent = normalized.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        normalized = value.quantize(_TWO_PLACES)
    return format(normalized, "f")


def format_number(value: Decimal) -> str:
    """Quantities and prices without trailing zeros or exponent: `"25"`, `"190.25"`."""
    normalized = value.normalize()
    if normalized == 0:
        return "0"
    return format(normalized, "f")


Money = Annotated[
    Decimal,
    PlainSerializer(format_money, return_type=str, when_used="json"),
    Field(json_schema_extra={"type": "string", "format": "decimal", "examples": ["1902.52"]}),
]
Number = Annotated[
    Decimal,
    PlainSerializer(format_number, return_type=str, when_used="json"),
    Field(json_schema_extra={"type": "string", "format": "decimal", "examples": ["25"]}),
]


def _parse_instant(value: object) -> object:
    """Dates mean midnight UTC; datetimes need an offset; everything ends up in UTC."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10:
            try:
                return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
            except ValueError as exc:
                raise ValueError("not a date (YYYY-MM-DD) or RFC 3339 timestamp") from exc
    return value


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps need a UTC offset, e.g. 2025-03-14T00:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("timestamp out of range") from exc


#: A query-string instant: `2025-03-14` (midnight UTC) or an RFC 3339 timestamp with offset.
Instant = Annotated[datetime, BeforeValidator(_parse_instant), AfterValidator(_to_utc)]
#: A money filter bound (exact; within the range every backend stores exactly).
MoneyFilter = Annotated[Decimal, Field(ge=-MONEY_FILTER_LIMIT, le=MONEY_FILTER_LIMIT)]
Limit = Annotated[int, Field(ge=1, le=500)]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- accounts and balances ------------------------------------------------------------------


class BalanceSummary(_Out):
    """The latest balances of an account, in short."""

    current: Money | None = Field(description="Total account value (liquidation value).")
    available: Money | None = Field(description="Funds available to withdraw or trade.")
    as_of: datetime


class Balance(_Out):
    """One balance snapshot: the account's balances at `as_of`."""

    id: uuid.UUID
    account_id: uuid.UUID
    as_of: datetime
    currency: str
    current: Money | None
    available: Money | None
    cash: Money | None
    buying_power: Money | None
    liquidation_value: Money | None
    long_market_value: Money | None
    short_market_value: Money | None
    money_market_fund: Money | None


class AccountOut(_Out):
    """An institution account with its latest balance."""

    id: uuid.UUID
    provider_id: uuid.UUID
    name: str
    type: AccountType
    masked_number: str | None = Field(description="Last four characters only, e.g. `****7365`.")
    currency: str
    is_active: bool
    first_seen_at: datetime
    last_seen_at: datetime
    balance: BalanceSummary | None = Field(description="None until the first sync.")


class AccountDetail(AccountOut):
    """An account with every field of its latest balance snapshot."""

    balances: Balance | None


class AccountList(BaseModel):
    """Every account of the caller (a small bounded list: never paged)."""

    items: list[AccountOut]
    next_cursor: str | None = None
    has_more: bool = False


class BalancePage(BaseModel):
    """A page of balance snapshots, newest first."""

    items: list[Balance]
    next_cursor: str | None
    has_more: bool


# --- positions ------------------------------------------------------------------------------


class PositionOut(_Out):
    """A current holding of one account."""

    id: uuid.UUID
    account_id: uuid.UUID
    symbol: str
    cusip: str | None
    description: str | None
    asset_type: str
    quantity: Number = Field(description="Long minus short.")
    average_price: Number | None
    market_value: Money
    cost_basis: Money | None
    unrealized_pl: Money | None
    currency: str
    as_of: datetime


class PositionGroup(BaseModel):
    """One symbol's holdings summed across the caller's accounts (exact sums)."""

    symbol: str
    description: str | None
    asset_type: str
    currency: str
    quantity: Number
    market_value: Money
    cost_basis: Money | None = Field(description="None if any account lacks a cost basis.")
    unrealized_pl: Money | None
    account_ids: list[uuid.UUID]
    as_of: datetime


class PositionList(BaseModel):
    """Holdings (a bounded list: never paged)."""

    items: list[PositionOut]
    next_cursor: str | None = None
    has_more: bool = False


class PositionGroupList(BaseModel):
    """Holdings grouped by symbol (a bounded list: never paged)."""

    items: list[PositionGroup]
    next_cursor: str | None = None
    has_more: bool = False


# --- transactions ---------------------------------------------------------------------------


class TransactionOut(_Out):
    """One transaction. `amount` is signed from the account holder's view: positive = money in."""

    id: uuid.UUID
    account_id: uuid.UUID
    provider_id: uuid.UUID
    external_id: str
    posted_at: datetime
    trade_date: date | None
    settlement_date: date | None
    type: TransactionType
    subtype: str | None
    status: TransactionStatus
    description: str | None
    amount: Money
    currency: str
    symbol: str | None
    quantity: Number | None = Field(description="Signed: positive = received/bought.")
    price: Number | None
    fees: Money = Field(description="Fees and commissions paid (positive).")
    first_seen_at: datetime
    last_modified_at: datetime


class TransactionPage(BaseModel):
    """A page of transactions, newest first (by `posted_at`, then `id`)."""

    items: list[TransactionOut]
    next_cursor: str | None
    has_more: bool


class TransactionChanges(BaseModel):
    """Changes since the cursor, in commit order. Apply `added` and `modified` as upserts by
    `id` and `removed` as deletes; then store `next_cursor` and call again while `has_more`."""

    added: list[TransactionOut]
    modified: list[TransactionOut]
    removed: list[uuid.UUID]
    next_cursor: str
    has_more: bool


class TransactionFilters(BaseModel):
    """Filters of `GET /transactions` (all optional, combined with AND)."""

    model_config = ConfigDict(frozen=True)

    account_id: uuid.UUID | None = None
    provider_id: uuid.UUID | None = None
    since: datetime | None = Field(default=None, description="posted_at >= since")
    until: datetime | None = Field(default=None, description="posted_at < until")
    type: TransactionType | None = None
    status: TransactionStatus | None = None
    symbol: str | None = None
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None


# --- portfolio ------------------------------------------------------------------------------


class PortfolioAccount(BaseModel):
    """One account's share of the portfolio."""

    account_id: uuid.UUID
    name: str
    type: AccountType
    total_value: Money
    cash: Money
    invested: Money
    as_of: datetime | None


class PortfolioAssetType(BaseModel):
    """Holdings of one asset type across accounts, plus uninvested cash as `cash`."""

    asset_type: str
    market_value: Money
    cost_basis: Money | None
    unrealized_pl: Money | None


class Portfolio(BaseModel):
    """The caller's whole portfolio in one currency (exact sums).

    `total_value` is what the institutions report as account value (liquidation value);
    `cash` is uninvested cash; `invested` is the market value of holdings.
    """

    currency: str
    total_value: Money
    cash: Money
    invested: Money
    unrealized_pl: Money
    by_account: list[PortfolioAccount]
    by_asset_type: list[PortfolioAssetType]
    as_of: datetime | None = Field(description="The oldest data point used (None: no data).")


GroupBy = Literal["symbol"]
