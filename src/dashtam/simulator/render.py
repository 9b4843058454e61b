"""Schwab-shaped JSON for accounts, positions, transactions and user preferences.

Money is computed with `Decimal` (or integer cents) and converted to a JSON number only at the
end. Every value has at most 4 decimals and far fewer than 15 significant digits, so the float
that `json` writes prints exactly the decimal digits we computed (shortest round-trip repr):
no float arithmetic ever touches an amount.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from dashtam.simulator.catalog import INSTRUMENTS, AccountSpec, Holding, Instrument, UserSpec
from dashtam.simulator.data import Kind, Txn

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
