"""Schwab Trader API payloads -> Dashtam's normalised records. Pure functions, no I/O.

Input is what `SchwabProvider` returns: decoded JSON with numbers as `Decimal` and every plain
account number replaced by `accountNumberLast4` (plus `accountHash` on account payloads).
Numbers are also accepted as `int` or decimal strings (raw payloads stored by the general path
keep decimals as strings); a float is converted through its shortest repr and never used for
arithmetic.

Shapes the reference marks UNCERTAIN are accepted in every documented form: balance fields are
all optional (CASH accounts send a smaller set), `time` comes with or without a colon in the
offset and with or without milliseconds, `activityType` may be missing, `isInCall` may be a
number, and the single-transaction endpoint's one-element array is unwrapped by the client.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any

from dashtam.core.types import to_decimal
from dashtam.models.financial import (
    AccountData,
    AccountSnapshot,
    AccountType,
    BalanceData,
    PositionData,
    TransactionData,
    TransactionStatus,
    TransactionType,
)

DEFAULT_CURRENCY = "USD"
_DESCRIPTION_MAX = 500
_OPTION_MULTIPLIER = Decimal(100)
_QUANTUM = Decimal("0.00000001")

_TIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:\.(?P<frac>\d{1,9}))?)?)?"
    r"\s*(?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)

#: Schwab `status` -> ours. UNKNOWN is not final, so it is treated as pending.
_STATUS: dict[str, TransactionStatus] = {
    "VALID": TransactionStatus.POSTED,
    "PENDING": TransactionStatus.PENDING,
    "INVALID": TransactionStatus.CANCELLED,
    "UNKNOWN": TransactionStatus.PENDING,
}

_DEPOSIT_TYPES = frozenset({"ACH_RECEIPT", "CASH_RECEIPT", "WIRE_IN"})
_WITHDRAWAL_TYPES = frozenset({"ACH_DISBURSEMENT", "CASH_DISBURSEMENT", "WIRE_OUT"})
_TRANSFER_TYPES = frozenset({"JOURNAL", "RECEIVE_AND_DELIVER"})

_ASSET_TYPES: dict[str, str] = {
    "EQUITY": "equity",
    "OPTION": "option",
    "INDEX": "index",
    "MUTUAL_FUND": "mutual_fund",
    "CASH_EQUIVALENT": "cash_equivalent",
    "FIXED_INCOME": "fixed_income",
    "CURRENCY": "currency",
    "COLLECTIVE_INVESTMENT": "collective_investment",
    "FUTURE": "future",
    "FOREX": "forex",
    "PRODUCT": "product",
}


class MappingError(ValueError):
    """A payload lacks something we cannot do without (an id, a time, a market value)."""


# --- scalars ---------------------------------------------------------------------------------


def decimal_or_none(value: Any) -> Decimal | None:
    """An exact `Decimal` from a JSON number or decimal string; None when absent.

    Raises:
        MappingError: Booleans, non-numeric text, NaN or infinity.
    """
    if type(value) is Decimal:
        # The common case (decoded JSON numbers): skip the general conversion.
        if not value.is_finite():
            raise MappingError(f"non-finite number {value!r}")
        return value
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise MappingError(f"expected a number, got {value!r}")
    try:
        number = to_decimal(value)
    except ValueError as exc:
        raise MappingError(str(exc)) from exc
    if not number.is_finite():
        raise MappingError(f"non-finite number {value!r}")
    return number


def parse_time(value: Any) -> datetime:
    """Parse Schwab's timestamps leniently into an aware UTC datetime.

    Accepts `2025-03-14T14:31:07+0000`, `…+00:00`, `…Z`, `….123Z`, and a bare date (midnight
    UTC). A value without an offset is taken as UTC (Schwab always reports UTC).

    Raises:
        MappingError: Anything else.
    """
    if not isinstance(value, str):
        raise MappingError(f"expected a timestamp string, got {value!r}")
    if (
        len(value) == 24
        and value.endswith("+0000")
        and value[10] == "T"
        and value[4] == value[7] == "-"
        and value[13] == value[16] == ":"
        and value.isascii()
    ):
        # Schwab's own shape (`2025-03-14T14:31:07+0000`), parsed in C. With every separator
        # in place, `fromisoformat` accepts exactly the digit strings the pattern below does;
        # anything it refuses takes the general path (and its error).
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value)
    match = _TIME.match(value.strip())
    if match is None:
        raise MappingError(f"unrecognised timestamp {value!r}")
    try:
        day = date.fromisoformat(match["date"])
        frac = (match["frac"] or "0")[:6].ljust(6, "0")
        zone = _offset(match["tz"])
        moment = datetime(
            day.year,
            day.month,
            day.day,
            int(match["h"] or 0),
            int(match["m"] or 0),
            int(match["s"] or 0),
            int(frac),
            tzinfo=zone,
        )
        # Schwab reports UTC: skip the conversion then (it is a measurable share of a sync).
        return moment if zone is UTC else moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise MappingError(f"invalid timestamp {value!r}") from exc


@lru_cache(maxsize=64)
def _offset(text: str | None) -> timezone:
    # Cached: a payload repeats one or two offsets thousands of times.
    if text is None or text in ("Z", "z"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours == 0 and minutes == 0:
        return UTC
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


@lru_cache(maxsize=4096)
def _cached_date(text: str) -> date:
    # Trade and settlement dates repeat for every row of a day: parse each text once.
    return parse_time(text).date()


def _date_or_none(value: Any) -> date | None:
    if value in (None, ""):
        return None
    if type(value) is str:
        return _cached_date(value)
    return parse_time(value).date()


def _text(value: Any, limit: int = _DESCRIPTION_MAX) -> str | None:
    if not isinstance(value, str):
        return None
    cleaned = " ".join(value.split())
    return cleaned[:limit] or None


def _first(*values: Decimal | None) -> Decimal | None:
    for value in values:
        if value is not None:
            return value
    return None


def _plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros (`25`, `190.25`)."""
    normalized = value.normalize()
    if normalized == 0:
        return "0"
    return format(normalized, "f")


#: JSON leaves that `json_safe` keeps as they are (checked by exact type: the fast path).
_JSON_LEAVES: frozenset[type] = frozenset({str, int, bool, float, type(None)})


def json_safe(value: Any) -> Any:
    """A JSON-serialisable copy of a payload: decimals become exact decimal strings."""
    kind = type(value)
    if kind in _JSON_LEAVES:
        return value
    if kind is Decimal:
        return format(value, "f")
    if kind is dict:
        # Most members of a decoded payload are plain leaves: copy those without a call.
        return {
            (k if type(k) is str else str(k)): (v if type(v) in _JSON_LEAVES else json_safe(v))
            for k, v in value.items()
        }
    if kind is list:
        return [v if type(v) in _JSON_LEAVES else json_safe(v) for v in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


# --- accounts, balances, positions ----------------------------------------------------------


def preference_index(preferences: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """User-preference accounts keyed by the last four digits of their number.

    The scrubbed preference payload carries `accountNumberLast4` (never the number). Two
    accounts sharing their last four digits are ambiguous, so neither is indexed.
    """
    if not preferences:
        return {}
    entries = preferences.get("accounts")
    if not isinstance(entries, list):
        return {}
    found: dict[str, Mapping[str, Any]] = {}
    ambiguous: set[str] = set()
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        key = entry.get("accountNumberLast4")
        if not isinstance(key, str) or not key:
            continue
        if key in found:
            ambiguous.add(key)
        found[key] = entry
    return {k: v for k, v in found.items() if k not in ambiguous}


def account_type(securities_type: str | None, *labels: str | None) -> AccountType:
    """Our account type from Schwab's `CASH`/`MARGIN` and any nickname or preference type.

    Retirement accounts are reported by Schwab as CASH accounts; only their nickname or
    preference type says IRA, so those win when they say so.
    """
    text = " ".join(label.upper() for label in labels if label)
    if "ROTH" in text:
        return AccountType.ROTH_IRA
    if re.search(r"\bIRA\b", text) or "RETIREMENT" in text or "ROLLOVER" in text:
        return AccountType.IRA
    kind = (securities_type or "").upper()
    if kind == "MARGIN":
        return AccountType.MARGIN
    if kind == "CASH":
        return AccountType.CASH
    return AccountType.OTHER


def map_balance(securities: Mapping[str, Any], aggregated: Mapping[str, Any] | None) -> BalanceData:
    """Balances from `currentBalances`, falling back to `initialBalances` and the aggregate.

    Every field is optional: MARGIN accounts send a large set, CASH accounts a small one
    (`totalCash`, `cashAvailableForWithdrawal`, …), and `aggregatedBalance` is not in the spec.
    """
    current = _mapping(securities.get("currentBalances"))
    initial = _mapping(securities.get("initialBalances"))
    agg = _mapping(aggregated)

    def cur(name: str) -> Decimal | None:
        return decimal_or_none(current.get(name))

    def ini(name: str) -> Decimal | None:
        return decimal_or_none(initial.get(name))

    def aggr(name: str) -> Decimal | None:
        return decimal_or_none(agg.get(name))

    liquidation = _first(cur("liquidationValue"), aggr("liquidationValue"), ini("liquidationValue"))
    total = _first(
        cur("liquidationValue"),
        aggr("currentLiquidationValue"),
        aggr("liquidationValue"),
        ini("liquidationValue"),
        ini("accountValue"),
    )
    return BalanceData(
        current=total,
        available=_first(
            cur("availableFunds"),
            cur("cashAvailableForWithdrawal"),
            cur("cashAvailableForTrading"),
            ini("cashAvailableForWithdrawal"),
        ),
        cash=_first(cur("cashBalance"), cur("totalCash"), ini("cashBalance"), ini("totalCash")),
        buying_power=_first(cur("buyingPower"), cur("cashAvailableForTrading"), ini("buyingPower")),
        liquidation_value=liquidation,
        long_market_value=_first(
            cur("longMarketValue"), cur("longNonMarginableMarketValue"), ini("longStockValue")
        ),
        short_market_value=_first(cur("shortMarketValue"), ini("shortStockValue")),
        money_market_fund=_first(cur("moneyMarketFund"), ini("moneyMarketFund")),
        currency=DEFAULT_CURRENCY,
    )


def normalise_asset_type(asset_type: Any, instrument_type: Any = None) -> str:
    """`EQUITY` -> `equity`; an exchange-traded `COLLECTIVE_INVESTMENT` -> `etf`."""
    kind = str(asset_type or "").upper()
    if kind == "COLLECTIVE_INVESTMENT" and str(instrument_type or "").upper() in (
        "EXCHANGE_TRADED_FUND",
        "ETF",
    ):
        return "etf"
    return _ASSET_TYPES.get(kind, "other")


def map_position(item: Mapping[str, Any]) -> PositionData:
    """One `positions[]` item.

    quantity = longQuantity − shortQuantity; cost basis = quantity × average price (× the
    option multiplier for options), since Schwab sends no cost basis; unrealised P/L =
    market value − cost basis, or Schwab's open P/L when the average price is missing.

    Raises:
        MappingError: No identifiable instrument or no market value.
    """
    instrument = _mapping(item.get("instrument"))
    symbol = _text(instrument.get("symbol"), 64)
    cusip = _text(instrument.get("cusip"), 16)
    instrument_id = instrument.get("instrumentId")
    key = symbol or cusip or (f"ID:{instrument_id}" if instrument_id is not None else None)
    if key is None:
        raise MappingError("position without symbol, CUSIP or instrument id")
    market_value = decimal_or_none(item.get("marketValue"))
    if market_value is None:
        raise MappingError(f"position {key} has no marketValue")
    long_qty = decimal_or_none(item.get("longQuantity")) or Decimal(0)
    short_qty = decimal_or_none(item.get("shortQuantity")) or Decimal(0)
    quantity = long_qty - short_qty
    average = decimal_or_none(item.get("averagePrice"))
    if average is None:
        side = "averageShortPrice" if quantity < 0 else "averageLongPrice"
        average = decimal_or_none(item.get(side))
    asset_type = normalise_asset_type(instrument.get("assetType"), instrument.get("type"))
    multiplier = Decimal(1)
    if asset_type == "option":
        multiplier = decimal_or_none(instrument.get("optionMultiplier")) or _OPTION_MULTIPLIER
    cost_basis = quantity * average * multiplier if average is not None else None
    if cost_basis is not None:
        unrealized: Decimal | None = market_value - cost_basis
    else:
        open_pl = [
            v
            for v in (
                decimal_or_none(item.get("longOpenProfitLoss")),
                decimal_or_none(item.get("shortOpenProfitLoss")),
            )
            if v is not None
        ]
        unrealized = sum(open_pl, Decimal(0)) if open_pl else None
    return PositionData(
        position_key=key,
        symbol=symbol or key,
        cusip=cusip,
        asset_type=asset_type,
        description=_text(instrument.get("description")),
        quantity=quantity,
        average_price=average,
        market_value=market_value,
        cost_basis=cost_basis,
        unrealized_pl=unrealized,
        currency=DEFAULT_CURRENCY,
    )


def merge_positions(positions: Iterable[PositionData]) -> tuple[PositionData, ...]:
    """One position per `position_key`, summing duplicates exactly, in key order."""
    merged: dict[str, PositionData] = {}
    for pos in positions:
        seen = merged.get(pos.position_key)
        if seen is None:
            merged[pos.position_key] = pos
            continue
        quantity = seen.quantity + pos.quantity
        cost = _sum_optional(seen.cost_basis, pos.cost_basis)
        average = seen.average_price
        if cost is not None and quantity != 0 and seen.asset_type != "option":
            average = (cost / quantity).quantize(_QUANTUM)
        merged[pos.position_key] = PositionData(
            position_key=pos.position_key,
            symbol=seen.symbol,
            cusip=seen.cusip or pos.cusip,
            asset_type=seen.asset_type,
            description=seen.description or pos.description,
            quantity=quantity,
            average_price=average,
            market_value=seen.market_value + pos.market_value,
            cost_basis=cost,
            unrealized_pl=_sum_optional(seen.unrealized_pl, pos.unrealized_pl),
            currency=seen.currency,
        )
    return tuple(merged[key] for key in sorted(merged))


def _sum_optional(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    if a is None or b is None:
        return None
    return a + b


def map_account(
    payload: Mapping[str, Any],
    *,
    preferences: Mapping[str, Mapping[str, Any]] | None = None,
) -> AccountSnapshot:
    """One `Account` payload (`securitiesAccount` + `aggregatedBalance`).

    Args:
        payload: As returned by the provider (scrubbed: `accountHash`, `accountNumberLast4`).
        preferences: `preference_index(...)` of the user preferences, for nicknames and IRA
            detection.

    Returns:
        The account, its balances, and its positions (None when the payload had none).

    Raises:
        MappingError: No account hash (the plain number is never used as an id).
    """
    securities = _mapping(payload.get("securitiesAccount"))
    if not securities:
        raise MappingError("account payload without securitiesAccount")
    account_hash = securities.get("accountHash") or payload.get("accountHash")
    if not isinstance(account_hash, str) or not account_hash:
        raise MappingError("account payload without accountHash")
    last4 = securities.get("accountNumberLast4")
    last4 = last4 if isinstance(last4, str) and last4 else None
    pref = (preferences or {}).get(last4 or "", {})
    nickname = _text(pref.get("nickName"), 200)
    kind = account_type(_text(securities.get("type")), nickname, _text(pref.get("type")))
    name = nickname or f"Schwab {kind.value.replace('_', ' ').title()}" + (
        f" …{last4}" if last4 else ""
    )
    positions_raw = securities.get("positions")
    positions: tuple[PositionData, ...] | None = None
    if isinstance(positions_raw, list):
        positions = merge_positions(
            map_position(item) for item in positions_raw if isinstance(item, Mapping)
        )
    return AccountSnapshot(
        account=AccountData(
            external_id=account_hash,
            name=name,
            type=kind,
            masked_number=f"****{last4}" if last4 else None,
            currency=DEFAULT_CURRENCY,
        ),
        balance=map_balance(securities, _mapping(payload.get("aggregatedBalance"))),
        positions=positions,
    )


def map_accounts(
    payloads: Sequence[Mapping[str, Any]], preferences: Mapping[str, Any] | None = None
) -> list[AccountSnapshot]:
    """Every account of an `accounts` reply, with nicknames from the user preferences."""
    index = preference_index(preferences)
    return [map_account(payload, preferences=index) for payload in payloads]


# --- transactions ----------------------------------------------------------------------------


_CURRENCY_CODE = re.compile(r"[A-Z]{3}")
_INTEREST = re.compile(r"\bINT(EREST)?\b")


def _rank(item: Mapping[str, Any]) -> tuple[Decimal, bool, str]:
    """Order of security legs: |amount|, then priced, then symbol (stable under reordering)."""
    amount = decimal_or_none(item.get("amount")) or Decimal(0)
    symbol = _mapping(item.get("instrument")).get("symbol")
    return (abs(amount), item.get("price") is not None, str(symbol or ""))


def _legs(items: Sequence[Mapping[str, Any]]) -> tuple[str, Mapping[str, Any] | None, Decimal]:
    """What the transfer items say, in one pass: (currency, security leg, fees).

    * currency: from the first cash leg whose symbol is `CURRENCY_<ISO code>` (default USD);
    * security leg: among the legs that are neither cash nor fees, the one with the largest
      |amount| (deterministic under reordering), or None;
    * fees: paid as a positive number, minus the sum of the fee legs' cash effect (`cost`, or
      minus `amount` without one).
    """
    currency: str | None = None
    legs: list[Mapping[str, Any]] = []
    fee_total = Decimal(0)
    for item in items:
        instrument = item.get("instrument")
        if type(instrument) is not dict:
            instrument = _mapping(instrument)
        cash = str(instrument.get("assetType", "")).upper() == "CURRENCY"
        if item.get("feeType"):
            cost = decimal_or_none(item.get("cost"))
            if cost is None:
                cost = -(decimal_or_none(item.get("amount")) or Decimal(0))
            fee_total += cost
        elif not cash:
            legs.append(item)
        if cash and currency is None:
            symbol = instrument.get("symbol")
            if isinstance(symbol, str) and symbol.startswith("CURRENCY_"):
                code = symbol.removeprefix("CURRENCY_").upper()
                if _CURRENCY_CODE.fullmatch(code):
                    currency = code
    # One leg needs no ranking (its amount is still checked: it becomes the quantity).
    leg = max(legs, key=_rank) if len(legs) > 1 else legs[0] if legs else None
    return currency or DEFAULT_CURRENCY, leg, (-fee_total if fee_total else Decimal(0))


def _is_cash_leg(item: Mapping[str, Any]) -> bool:
    return str(_mapping(item.get("instrument")).get("assetType", "")).upper() == "CURRENCY"


def _fallback_amount(items: Sequence[Mapping[str, Any]]) -> Decimal:
    # Without `netAmount`, the cash effect is the sum of every leg's `cost` plus the amounts of
    # plain cash legs (deposits carry their money in `amount`).
    total = Decimal(0)
    for item in items:
        total += decimal_or_none(item.get("cost")) or Decimal(0)
        if _is_cash_leg(item) and not item.get("feeType"):
            total += decimal_or_none(item.get("amount")) or Decimal(0)
    return total


def classify(
    schwab_type: str,
    description: str | None,
    amount: Decimal,
    quantity: Decimal | None,
    symbol: str | None,
) -> tuple[TransactionType, str]:
    """Our (type, subtype) for a Schwab `TransactionType` and what the row says about itself."""
    kind = schwab_type.upper()
    text = (description or "").upper()
    if kind == "TRADE":
        if quantity is not None and quantity != 0:
            return TransactionType.TRADE, "buy" if quantity > 0 else "sell"
        return TransactionType.TRADE, "buy" if amount < 0 else "sell" if amount > 0 else "trade"
    if kind == "DIVIDEND_OR_INTEREST":
        if _INTEREST.search(text):
            return TransactionType.INTEREST, "dividend_or_interest"
        if "DIV" in text or symbol:
            return TransactionType.DIVIDEND, "dividend_or_interest"
        return TransactionType.INTEREST, "dividend_or_interest"
    if kind in _DEPOSIT_TYPES:
        return TransactionType.DEPOSIT, kind.lower()
    if kind in _WITHDRAWAL_TYPES:
        return TransactionType.WITHDRAWAL, kind.lower()
    if kind == "ELECTRONIC_FUND":
        family = TransactionType.WITHDRAWAL if amount < 0 else TransactionType.DEPOSIT
        return family, kind.lower()
    if kind in _TRANSFER_TYPES:
        return TransactionType.TRANSFER, kind.lower()
    if "FEE" in text and amount < 0:
        return TransactionType.FEE, kind.lower() or "fee"
    return TransactionType.OTHER, kind.lower() or "unknown"


def map_transaction(payload: Mapping[str, Any]) -> TransactionData:
    """One `Transaction` payload.

    amount = `netAmount` (signed: positive = money in); symbol, quantity (signed: positive =
    received) and price from the security leg; fees = the fee legs' cash, as a positive number;
    status VALID/PENDING/INVALID/UNKNOWN -> posted/pending/cancelled/pending.

    Raises:
        MappingError: No `activityId` or no usable time.
    """
    activity_id = payload.get("activityId")
    external_id = "" if activity_id is None or isinstance(activity_id, bool) else str(activity_id)
    external_id = external_id.strip()
    if not external_id:
        raise MappingError("transaction without activityId")
    time_value = payload.get("time") or payload.get("tradeDate")
    if time_value is None:
        raise MappingError(f"transaction {external_id} has no time")
    items = [
        i for i in payload.get("transferItems") or [] if type(i) is dict or isinstance(i, Mapping)
    ]
    amount = decimal_or_none(payload.get("netAmount"))
    if amount is None:
        amount = _fallback_amount(items)
    currency, leg, fees = _legs(items)
    symbol = quantity = price = None
    if leg is not None:
        instrument = _mapping(leg.get("instrument"))
        symbol = _text(instrument.get("symbol"), 64) or _text(instrument.get("cusip"), 64)
        quantity = decimal_or_none(leg.get("amount"))
        price = decimal_or_none(leg.get("price"))
        if quantity == 0 and price is None:
            quantity = None  # a dividend's reference leg moves no shares
    description = _text(payload.get("description"))
    schwab_type = str(payload.get("type") or "")
    family, subtype = classify(schwab_type, description, amount, quantity, symbol)
    if description is None and family is TransactionType.TRADE and symbol and quantity:
        verb = "Bought" if quantity > 0 else "Sold"
        at = f" @ {_plain(price)}" if price is not None else ""
        description = f"{verb} {_plain(abs(quantity))} {symbol}{at}"
    status = _STATUS.get(str(payload.get("status") or "VALID").upper(), TransactionStatus.PENDING)
    return TransactionData(
        external_id=external_id,
        posted_at=parse_time(time_value),
        type=family,
        subtype=subtype,
        status=status,
        amount=amount,
        currency=currency,
        trade_date=_date_or_none(payload.get("tradeDate")),
        settlement_date=_date_or_none(payload.get("settlementDate")),
        description=description,
        symbol=symbol,
        quantity=quantity,
        price=price,
        fees=fees,
        # The payload itself, not a JSON-safe copy: it is already our own scrubbed copy (a
        # `RawPayload` also carries its text, which the store writes as it is).
        raw=payload if isinstance(payload, dict) else dict(payload),
    )


def map_transactions(payloads: Iterable[Mapping[str, Any]]) -> list[TransactionData]:
    """Every transaction of a window; duplicates of one `activityId` keep the last seen."""
    by_id: dict[str, TransactionData] = {}
    for payload in payloads:
        row = map_transaction(payload)
        by_id[row.external_id] = row
    return list(by_id.values())


def oldest_transaction_time(payloads: Iterable[Mapping[str, Any]]) -> datetime | None:
    """The earliest `time` (or `tradeDate`) among transaction payloads; unreadable ones skipped.

    Used to size the next window after a full (possibly truncated) reply, without mapping it.
    """
    oldest: datetime | None = None
    for payload in payloads:
        value = payload.get("time") or payload.get("tradeDate")
        try:
            moment = parse_time(value)
        except MappingError:
            continue
        if oldest is None or moment < oldest:
            oldest = moment
    return oldest


def _mapping(value: Any) -> Mapping[str, Any]:
    # Exact-type check first: decoded payloads are plain dicts, and the ABC check is slow.
    return value if type(value) is dict or isinstance(value, Mapping) else {}
