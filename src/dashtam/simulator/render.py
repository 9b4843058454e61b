"""Schwab-shaped JSON for accounts, positions, transactions and user preferences.

Money is computed with `Decimal` (or integer cents) and converted to a JSON number only at the
end. Every value has at most 4 decimals and far fewer than 15 significant digits, so the float
that `json` writes prints exactly the decimal digits we computed (shortest round-trip repr):
no float arithmetic ever touches an amount.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from dashtam.simulator.catalog import INSTRUMENTS, AccountSpec, Holding, Instrument, UserSpec
from dashtam.simulator.data import TRANSACTION_TYPE, Kind, Txn

_CENT = Decimal("0.01")
_MAINTENANCE_RATE = Decimal("0.30")
_CURRENCY_USD: dict[str, Any] = {
    "assetType": "CURRENCY",
    "status": "ACTIVE",
    "symbol": "CURRENCY_USD",
    "description": "USD currency",
    "instrumentId": 1,
    "closingPrice": 0.0,
}
_DESCRIPTIONS: dict[Kind, str] = {
    Kind.DIVIDEND: "QUALIFIED DIVIDEND",
    Kind.INTEREST: "CREDIT INTEREST",
    Kind.ACH_IN: "ACH DEPOSIT",
    Kind.ACH_OUT: "ACH WITHDRAWAL",
}


def number(value: Decimal) -> float:
    """A JSON number for an exact decimal (see the module docstring for why this is exact)."""
    result = float(value)
    # Guard the claim above: the printed float must carry exactly the decimal's value.
    if Decimal(repr(result)) != value:
        raise ValueError(f"{value} cannot be written exactly as a JSON number")
    return result


def cents(value: int) -> float:
    """A JSON number for an integer amount of cents."""
    return number(Decimal(value).scaleb(-2))


def dumps(payload: Any) -> bytes:
    """Compact JSON bytes, as the real API sends them."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def schwab_time(seconds: int) -> str:
    """Schwab's timestamp style: `2025-03-14T14:31:07+0000`."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _midnight(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT00:00:00+0000")


def _next_business_day(seconds: int) -> int:
    moment = datetime.fromtimestamp(seconds, UTC) + timedelta(days=1)
    while moment.weekday() >= 5:
        moment += timedelta(days=1)
    return int(moment.timestamp())


def _transaction_instrument(inst: Instrument) -> dict[str, Any]:
    return {
        "assetType": inst.asset_type,
        "status": "ACTIVE",
        "symbol": inst.symbol,
        "cusip": inst.cusip,
        "description": inst.description,
        "instrumentId": inst.instrument_id,
        "closingPrice": number(inst.price),
        "type": inst.type,
    }


def _cash_leg(amount_cents: int, fee_type: str | None = None) -> dict[str, Any]:
    if fee_type is None:
        return {"instrument": _CURRENCY_USD, "amount": cents(amount_cents), "cost": 0.0}
    return {
        "instrument": _CURRENCY_USD,
        "amount": 0.0,
        "cost": cents(-amount_cents),
        "feeType": fee_type,
    }


def transaction_json(txn: Txn, acct: AccountSpec, now: int) -> dict[str, Any]:
    """One `Transaction` as Schwab renders it, in its state at `now`.

    Args:
        txn: The row.
        acct: Its account.
        now: The simulator clock (decides PENDING / VALID / INVALID and the pending amount).

    Returns:
        The JSON object (fields in the order the real API tends to send them).
    """
    kind = Kind(txn.kind)
    pending = txn.pending(now)
    status = "INVALID" if txn.cancelled(now) else "PENDING" if pending else "VALID"
    trade = kind is Kind.BUY or kind is Kind.SELL
    body: dict[str, Any] = {"activityId": txn.activity_id, "time": schwab_time(txn.time)}
    if kind in _DESCRIPTIONS:
        body["description"] = _DESCRIPTIONS[kind]
    elif kind is Kind.JOURNAL_IN:
        body["description"] = f"JOURNAL FRM {acct.peer_number}"
    elif kind is Kind.JOURNAL_OUT:
        body["description"] = f"JOURNAL TO {acct.peer_number}"
    body["accountNumber"] = acct.number
    body["type"] = txn.type
    body["status"] = status
    body["subAccount"] = "MARGIN" if trade and acct.type == "MARGIN" else "CASH"
    body["tradeDate"] = schwab_time(txn.time) if trade else _midnight(txn.time)
    if not pending:
        settled = _next_business_day(txn.time) if trade else txn.time
        body["settlementDate"] = _midnight(settled)
    if trade:
        body["positionId"] = 2_900_000_000 + txn.activity_id % 97_000_000
        body["orderId"] = 1_000_000_000_000 + txn.activity_id % 99_000_000_000
    net = txn.net_at(now)
    body["netAmount"] = cents(net)
    if trade:
        body["activityType"] = "EXECUTION"
    body["transferItems"] = _transfer_items(txn, kind, net)
    return body


def _transfer_items(txn: Txn, kind: Kind, net: int) -> list[dict[str, Any]]:
    if kind is Kind.BUY or kind is Kind.SELL:
        inst = INSTRUMENTS[txn.instrument]
        gross = txn.quantity * txn.price_cents
        sign = 1 if kind is Kind.BUY else -1
        return [
            _cash_leg(0, "COMMISSION"),
            _cash_leg(txn.sec_fee_cents, "SEC_FEE"),
            _cash_leg(txn.taf_fee_cents, "TAF_FEE"),
            {
                "instrument": _transaction_instrument(inst),
                "amount": number(Decimal(sign * txn.quantity)),
                "cost": cents(-sign * gross),
                "price": cents(txn.price_cents),
                "positionEffect": "OPENING" if kind is Kind.BUY else "CLOSING",
            },
        ]
    items = [_cash_leg(net)]
    if kind is Kind.DIVIDEND:
        inst = INSTRUMENTS[txn.instrument]
        items.append({"instrument": _transaction_instrument(inst), "amount": 0.0, "cost": 0.0})
    return items


# --- accounts and positions ---------------------------------------------------------------


def _q(value: Decimal) -> Decimal:
    return value.quantize(_CENT)


def _position(holding: Holding) -> dict[str, Any]:
    inst = INSTRUMENTS[holding.instrument]
    qty = holding.quantity
    value = _q(qty * inst.price)
    cash_like = inst.asset_type == "CASH_EQUIVALENT"
    previous = inst.price - inst.net_change
    day_pl = _q(qty * inst.net_change)
    day_pct = _q(inst.net_change / previous * 100) if previous else Decimal(0)
    instrument: dict[str, Any] = {
        "assetType": inst.asset_type,
        "cusip": inst.cusip,
        "symbol": inst.symbol,
        "description": inst.description,
        "instrumentId": inst.instrument_id,
        "netChange": number(inst.net_change),
    }
    if inst.asset_type != "EQUITY":
        instrument["type"] = inst.type
    return {
        "shortQuantity": 0.0,
        "averagePrice": number(holding.average_price),
        "currentDayProfitLoss": number(day_pl),
        "currentDayProfitLossPercentage": number(day_pct),
        "longQuantity": number(qty),
        "settledLongQuantity": number(qty),
        "settledShortQuantity": 0.0,
        "instrument": instrument,
        "marketValue": number(value),
        "maintenanceRequirement": number(
            Decimal(0) if cash_like else _q(value * _MAINTENANCE_RATE)
        ),
        "averageLongPrice": number(holding.average_price),
        "taxLotAverageLongPrice": number(holding.average_price),
        "longOpenProfitLoss": number(_q(value - qty * holding.average_price)),
        "previousSessionLongQuantity": number(qty),
        "currentDayCost": 0.0,
    }


def _values(acct: AccountSpec) -> dict[str, Decimal]:
    long_value = mmf = maintenance = Decimal(0)
    for holding in acct.holdings:
        inst = INSTRUMENTS[holding.instrument]
        value = _q(holding.quantity * inst.price)
        if inst.asset_type == "CASH_EQUIVALENT":
            mmf += value
        else:
            long_value += value
            maintenance += _q(value * _MAINTENANCE_RATE)
    cash = acct.cash
    return {
        "cash": cash,
        "long": long_value,
        "mmf": mmf,
        "maintenance": maintenance,
        "liquidation": cash + long_value + mmf,
    }


def _margin_balances(v: dict[str, Decimal]) -> dict[str, dict[str, Any]]:
    n = {k: number(val) for k, val in v.items()}
    buying_power = number(v["cash"] * 2)
    zero = 0.0
    initial = {
        "accruedInterest": zero,
        "availableFundsNonMarginableTrade": n["cash"],
        "bondValue": zero,
        "buyingPower": buying_power,
        "cashBalance": n["cash"],
        "cashAvailableForTrading": n["cash"],
        "cashReceipts": zero,
        "dayTradingBuyingPower": zero,
        "dayTradingBuyingPowerCall": zero,
        "dayTradingEquityCall": zero,
        "equity": n["liquidation"],
        "equityPercentage": 100.0,
        "liquidationValue": n["liquidation"],
        "longMarginValue": n["long"],
        "longOptionMarketValue": zero,
        "longStockValue": n["long"],
        "maintenanceCall": zero,
        "maintenanceRequirement": n["maintenance"],
        "margin": n["cash"],
        "marginEquity": number(v["liquidation"] - v["mmf"]),
        "moneyMarketFund": n["mmf"],
        "mutualFundValue": zero,
        "regTCall": zero,
        "shortMarginValue": zero,
        "shortOptionMarketValue": zero,
        "shortStockValue": zero,
        "totalCash": zero,
        "isInCall": False,
        "pendingDeposits": zero,
        "marginBalance": zero,
        "shortBalance": zero,
        "accountValue": n["liquidation"],
    }
    current = {
        "accruedInterest": zero,
        "cashBalance": n["cash"],
        "cashReceipts": zero,
        "longOptionMarketValue": zero,
        "liquidationValue": n["liquidation"],
        "longMarketValue": n["long"],
        "moneyMarketFund": n["mmf"],
        "savings": zero,
        "shortMarketValue": zero,
        "pendingDeposits": zero,
        "mutualFundValue": zero,
        "bondValue": zero,
        "shortOptionMarketValue": zero,
        "availableFunds": n["cash"],
        "availableFundsNonMarginableTrade": n["cash"],
        "buyingPower": buying_power,
        "buyingPowerNonMarginableTrade": n["cash"],
        "dayTradingBuyingPower": zero,
        "equity": n["liquidation"],
        "equityPercentage": 100.0,
        "longMarginValue": n["long"],
        "maintenanceCall": zero,
        "maintenanceRequirement": n["maintenance"],
        "marginBalance": zero,
        "regTCall": zero,
        "shortBalance": zero,
        "shortMarginValue": zero,
        "sma": n["cash"],
    }
    projected = {
        "availableFunds": n["cash"],
        "availableFundsNonMarginableTrade": n["cash"],
        "buyingPower": buying_power,
        "dayTradingBuyingPower": zero,
        "dayTradingBuyingPowerCall": zero,
        "maintenanceCall": zero,
        "regTCall": zero,
        "isInCall": False,
        "stockBuyingPower": buying_power,
    }
    return {"initialBalances": initial, "currentBalances": current, "projectedBalances": projected}


def _cash_balances(v: dict[str, Decimal]) -> dict[str, dict[str, Any]]:
    n = {k: number(val) for k, val in v.items()}
    zero = 0.0
    initial = {
        "accruedInterest": zero,
        "cashAvailableForTrading": n["cash"],
        "cashAvailableForWithdrawal": n["cash"],
        "cashBalance": n["cash"],
        "bondValue": zero,
        "cashReceipts": zero,
        "liquidationValue": n["liquidation"],
        "longOptionMarketValue": zero,
        "longStockValue": n["long"],
        "moneyMarketFund": n["mmf"],
        "mutualFundValue": zero,
        "shortOptionMarketValue": zero,
        "shortStockValue": zero,
        "isInCall": False,
        "unsettledCash": zero,
        "cashDebitCallValue": zero,
        "pendingDeposits": zero,
        "accountValue": n["liquidation"],
    }
    current = {
        "cashAvailableForTrading": n["cash"],
        "cashAvailableForWithdrawal": n["cash"],
        "cashCall": zero,
        "longNonMarginableMarketValue": n["long"],
        "totalCash": n["cash"],
        "cashDebitCallValue": zero,
        "unsettledCash": zero,
    }
    projected = {"cashAvailableForTrading": n["cash"], "cashAvailableForWithdrawal": n["cash"]}
    return {"initialBalances": initial, "currentBalances": current, "projectedBalances": projected}


def account_json(acct: AccountSpec, *, positions: bool) -> dict[str, Any]:
    """One `Account` (`securitiesAccount` + `aggregatedBalance`); positions only when asked."""
    values = _values(acct)
    securities: dict[str, Any] = {
        "type": acct.type,
        "accountNumber": acct.number,
        "roundTrips": 0,
        "isDayTrader": False,
        "isClosingOnlyRestricted": False,
        "pfcbFlag": False,
    }
    if positions:
        securities["positions"] = [_position(h) for h in acct.holdings]
    balances = _margin_balances(values) if acct.type == "MARGIN" else _cash_balances(values)
    securities.update(balances)
    liquidation = number(values["liquidation"])
    return {
        "securitiesAccount": securities,
        "aggregatedBalance": {
            "currentLiquidationValue": liquidation,
            "liquidationValue": liquidation,
        },
    }


def account_numbers_json(user: UserSpec) -> list[dict[str, str]]:
    """`/accounts/accountNumbers`: plain numbers with their hashes."""
    return [{"accountNumber": a.number, "hashValue": a.hash} for a in user.accounts]


def user_preference_json(user: UserSpec, customer_id: str, correl_id: str) -> dict[str, Any]:
    """`/userPreference` as real responses send it: a single object."""
    return {
        "accounts": [
            {
                "accountNumber": a.number,
                "primaryAccount": a.primary,
                "type": "BROKERAGE",
                "nickName": a.nickname,
                "displayAcctId": a.display_id,
                "autoPositionEffect": False,
                "accountColor": a.color,
            }
            for a in user.accounts
        ],
        "streamerInfo": [
            {
                "streamerSocketUrl": "wss://streamer-api.schwab.com/ws",
                "schwabClientCustomerId": customer_id,
                "schwabClientCorrelId": correl_id,
                "schwabClientChannel": "N9",
                "schwabClientFunctionId": "APIAPP",
            }
        ],
        "offers": [{"level2Permissions": True, "mktDataPermission": "NP"}],
    }


def detail_body(
    body: dict[str, Any], shape: Literal["array", "object"]
) -> list[dict[str, Any]] | dict[str, Any]:
    """The single-transaction body: the spec's one-element array, or a bare object."""
    return [body] if shape == "array" else body


# --- fast path for transaction lists ------------------------------------------------------
#
# A whale sync asks for ~100k rows; building a dict per row and letting `json` walk it was the
# simulator's main cost. `transactions_json_bytes` writes the same bytes directly from the
# compact rows: constant fragments (instruments, descriptions, the account number) are encoded
# once, dates are cached per UTC day, and money is printed as `repr(cents / 100)`, which is the
# same float as `cents()` produces (both are the correctly rounded double of the exact
# quotient; `int / int` is correctly rounded in CPython) and therefore the same digits.
# `tests/unit/simulator/test_render.py` checks byte equality with `transaction_json` + `dumps`.

_DAY_SECONDS = 86_400
_DAY_CACHE_LIMIT = 8_192


def _encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_CURRENCY_FRAGMENT = _encode(_CURRENCY_USD)
_INSTRUMENT_FRAGMENTS: tuple[str, ...] = tuple(
    _encode(_transaction_instrument(inst)) for inst in INSTRUMENTS
)


def _fee_leg(amount_cents: int, fee_type: str) -> str:
    # `_cash_leg(amount, fee_type)`: the fee's cost is minus the amount.
    return (
        f'{{"instrument":{_CURRENCY_FRAGMENT},"amount":0.0,"cost":{-amount_cents / 100!r},'
        f'"feeType":"{fee_type}"}}'
    )


_COMMISSION_LEG = _fee_leg(0, "COMMISSION")


class _Days:
    """Per-UTC-day date strings (the date part, and the next business day's midnight)."""

    def __init__(self) -> None:
        self._dates: dict[int, str] = {}
        self._settle: dict[int, str] = {}

    def date(self, day: int) -> str:
        text = self._dates.get(day)
        if text is None:
            if len(self._dates) > _DAY_CACHE_LIMIT:
                self._dates.clear()
            text = datetime.fromtimestamp(day * _DAY_SECONDS, UTC).strftime("%Y-%m-%d")
            self._dates[day] = text
        return text

    def trade_settlement(self, day: int) -> str:
        text = self._settle.get(day)
        if text is None:
            if len(self._settle) > _DAY_CACHE_LIMIT:
                self._settle.clear()
            text = _midnight(_next_business_day(day * _DAY_SECONDS))
            self._settle[day] = text
        return text


_DAYS = _Days()


def _time_text(seconds: int) -> tuple[str, str]:
    """(`schwab_time(seconds)`, `_midnight(seconds)`) without building datetimes."""
    day, rest = divmod(seconds, _DAY_SECONDS)
    date_text = _DAYS.date(day)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (
        f"{date_text}T{hours:02d}:{minutes:02d}:{secs:02d}+0000",
        f"{date_text}T00:00:00+0000",
    )


class _AccountFragments:
    """The per-account constants of a transaction list, encoded once per response."""

    __slots__ = ("journal_in", "journal_out", "margin", "number")

    def __init__(self, acct: AccountSpec) -> None:
        self.number = _encode(acct.number)
        self.journal_in = _encode(f"JOURNAL FRM {acct.peer_number}")
        self.journal_out = _encode(f"JOURNAL TO {acct.peer_number}")
        self.margin = acct.type == "MARGIN"


def _transaction_text(txn: Txn, acct: _AccountFragments, now: int) -> str:
    """`dumps(transaction_json(txn, acct, now))` as text (see the section comment)."""
    kind = txn.kind
    cancelled = txn.cancel_at != 0 and now >= txn.cancel_at
    pending = txn.post_at != 0 and now < txn.post_at and not cancelled
    status = "INVALID" if cancelled else "PENDING" if pending else "VALID"
    trade = kind == Kind.BUY or kind == Kind.SELL
    time_text, midnight = _time_text(txn.time)
    parts = [f'{{"activityId":{txn.activity_id},"time":"{time_text}"']
    # IntEnum keys hash like their ints: no enum construction per row.
    description = _DESCRIPTIONS.get(kind)  # type: ignore[call-overload]
    if description is not None:
        parts.append(f',"description":"{description}"')
    elif kind == Kind.JOURNAL_IN:
        parts.append(f',"description":{acct.journal_in}')
    elif kind == Kind.JOURNAL_OUT:
        parts.append(f',"description":{acct.journal_out}')
    sub_account = "MARGIN" if trade and acct.margin else "CASH"
    parts.append(
        f',"accountNumber":{acct.number},"type":"{TRANSACTION_TYPE_NAMES[kind]}",'
        f'"status":"{status}","subAccount":"{sub_account}",'
        f'"tradeDate":"{time_text if trade else midnight}"'
    )
    if not pending:
        settled = _DAYS.trade_settlement(txn.time // _DAY_SECONDS) if trade else midnight
        parts.append(f',"settlementDate":"{settled}"')
    if trade:
        parts.append(
            f',"positionId":{2_900_000_000 + txn.activity_id % 97_000_000}'
            f',"orderId":{1_000_000_000_000 + txn.activity_id % 99_000_000_000}'
        )
    net = txn.pending_net_cents if pending else txn.net_cents
    parts.append(f',"netAmount":{net / 100!r}')
    if trade:
        sign = 1 if kind == Kind.BUY else -1
        gross = txn.quantity * txn.price_cents
        effect = "OPENING" if kind == Kind.BUY else "CLOSING"
        parts.append(
            f',"activityType":"EXECUTION","transferItems":[{_COMMISSION_LEG},'
            f"{_fee_leg(txn.sec_fee_cents, 'SEC_FEE')},{_fee_leg(txn.taf_fee_cents, 'TAF_FEE')},"
            f'{{"instrument":{_INSTRUMENT_FRAGMENTS[txn.instrument]},'
            f'"amount":{float(sign * txn.quantity)!r},"cost":{-sign * gross / 100!r},'
            f'"price":{txn.price_cents / 100!r},"positionEffect":"{effect}"}}]}}'
        )
    else:
        cash = f'{{"instrument":{_CURRENCY_FRAGMENT},"amount":{net / 100!r},"cost":0.0}}'
        security = (
            f',{{"instrument":{_INSTRUMENT_FRAGMENTS[txn.instrument]},"amount":0.0,"cost":0.0}}'
            if kind == Kind.DIVIDEND
            else ""
        )
        parts.append(f',"transferItems":[{cash}{security}]}}')
    return "".join(parts)


#: `Txn.kind` -> Schwab `TransactionType`, indexed by the integer kind (no enum call per row).
TRANSACTION_TYPE_NAMES: tuple[str, ...] = tuple(TRANSACTION_TYPE[Kind(k)] for k in range(len(Kind)))


def transactions_json_bytes(rows: Sequence[Txn], acct: AccountSpec, now: int) -> bytes:
    """`dumps([transaction_json(t, acct, now) for t in rows])`, rendered without the dicts.

    Args:
        rows: The rows, in response order.
        acct: Their account.
        now: The simulator clock.

    Returns:
        The compact JSON array, byte for byte what the general path writes.
    """
    fragments = _AccountFragments(acct)
    body = ",".join(_transaction_text(t, fragments, now) for t in rows)
    return f"[{body}]".encode()
