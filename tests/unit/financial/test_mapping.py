"""Schwab normalisation: every field, exact decimals, signs, statuses, UNCERTAIN shapes.

Payloads are the reference's documented examples (schwab-trader-api.md §2) and the simulator's
generator output, decoded the way the client decodes them (numbers as `Decimal`) and scrubbed
of plain account numbers exactly as the client scrubs them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from dashtam.models.financial import (
    AccountType,
    TransactionData,
    TransactionStatus,
    TransactionType,
    _canonical_json,
    transaction_content_hash,
)
from dashtam.providers.schwab.mapping import (
    MappingError,
    account_type,
    json_safe,
    map_account,
    map_accounts,
    map_transaction,
    map_transactions,
    oldest_transaction_time,
    parse_time,
    preference_index,
)
from dashtam.providers.schwab.parsing import scrub_account_numbers
from dashtam.services.financial.repository import raw_payload_json
from dashtam.simulator import render
from dashtam.simulator.catalog import INSTRUMENTS
from dashtam.simulator.data import Kind, Txn, create_dataset, epoch

MARGIN_HASH = "3F9A1C27E4B8D05F6A2C9E13B7D4F08A5C6E2B91D3F7A04E8B5C1D26F9A3E7B0"
CASH_HASH = "A07E5D3C91B24F68E0D7C3A5B19F2E846D0C7B3A5E9F1D2C4B6A8E0F3D5C7B91"
HASHES = {"41827365": MARGIN_HASH, "59201846": CASH_HASH}


def decode(text: str) -> Any:
    """JSON as the Schwab client decodes it: every fractional number a Decimal."""
    return json.loads(text, parse_float=Decimal)


def scrubbed(payload: Any, **kwargs: Any) -> Any:
    return scrub_account_numbers(payload, hashes=HASHES, **kwargs)


# --- reference payloads (schwab-trader-api.md §2.2, §2.3, §2.5) -----------------------------

MARGIN_ACCOUNT = """
{"securitiesAccount": {"type": "MARGIN", "accountNumber": "41827365", "roundTrips": 0,
  "isDayTrader": false, "isClosingOnlyRestricted": false, "pfcbFlag": false,
  "positions": [
   {"shortQuantity": 0.0, "averagePrice": 171.4025, "currentDayProfitLoss": 38.5,
    "currentDayProfitLossPercentage": 0.85, "longQuantity": 25.0, "settledLongQuantity": 25.0,
    "settledShortQuantity": 0.0,
    "instrument": {"assetType": "EQUITY", "cusip": "037833100", "symbol": "AAPL",
      "netChange": 1.54},
    "marketValue": 4563.75, "maintenanceRequirement": 1369.13, "averageLongPrice": 171.4025,
    "taxLotAverageLongPrice": 171.4025, "longOpenProfitLoss": 278.69,
    "previousSessionLongQuantity": 25.0, "currentDayCost": 0.0},
   {"shortQuantity": 0.0, "averagePrice": 412.10, "currentDayProfitLoss": -12.4,
    "currentDayProfitLossPercentage": -0.15, "longQuantity": 20.0, "settledLongQuantity": 20.0,
    "settledShortQuantity": 0.0,
    "instrument": {"assetType": "COLLECTIVE_INVESTMENT", "cusip": "922908363", "symbol": "VOO",
      "description": "VANGUARD S&P 500 ETF", "type": "EXCHANGE_TRADED_FUND"},
    "marketValue": 8403.0, "maintenanceRequirement": 2520.9, "averageLongPrice": 412.10,
    "taxLotAverageLongPrice": 412.10, "longOpenProfitLoss": 161.0,
    "previousSessionLongQuantity": 20.0, "currentDayCost": 0.0},
   {"shortQuantity": 0.0, "averagePrice": 1.0, "currentDayProfitLoss": 0.0,
    "currentDayProfitLossPercentage": 0.0, "longQuantity": 1250.37,
    "settledLongQuantity": 1250.37, "settledShortQuantity": 0.0,
    "instrument": {"assetType": "CASH_EQUIVALENT", "cusip": "808515605", "symbol": "SWVXX",
      "description": "SCHWAB VALUE ADVANTAGE MONEY INV", "type": "MONEY_MARKET_FUND"},
    "marketValue": 1250.37, "maintenanceRequirement": 0.0, "averageLongPrice": 1.0,
    "taxLotAverageLongPrice": 1.0, "longOpenProfitLoss": 0.0,
    "previousSessionLongQuantity": 1250.37, "currentDayCost": 0.0}],
  "initialBalances": {"accruedInterest": 0.0, "buyingPower": 6241.10, "cashBalance": 3120.55,
    "equity": 17337.67, "liquidationValue": 17337.67, "longStockValue": 12966.75,
    "moneyMarketFund": 1250.37, "totalCash": 0.0, "isInCall": false, "accountValue": 17337.67},
  "currentBalances": {"accruedInterest": 0.0, "cashBalance": 3120.55, "cashReceipts": 0.0,
    "liquidationValue": 17337.67, "longMarketValue": 12966.75, "moneyMarketFund": 1250.37,
    "shortMarketValue": 0.0, "availableFunds": 3120.55, "buyingPower": 6241.10,
    "equity": 17337.67, "sma": 3120.55},
  "projectedBalances": {"availableFunds": 3120.55, "buyingPower": 6241.10, "isInCall": false}},
 "aggregatedBalance": {"currentLiquidationValue": 17337.67, "liquidationValue": 17337.67}}
"""

CASH_ACCOUNT = """
{"securitiesAccount": {"type": "CASH", "accountNumber": "59201846", "roundTrips": 0,
  "isDayTrader": false, "isClosingOnlyRestricted": false, "pfcbFlag": false,
  "initialBalances": {"accruedInterest": 0.0, "cashAvailableForTrading": 2500.0,
    "cashAvailableForWithdrawal": 2500.0, "cashBalance": 2500.0, "liquidationValue": 9812.4,
    "longStockValue": 7312.4, "isInCall": 0, "accountValue": 9812.4},
  "currentBalances": {"cashAvailableForTrading": 2500.0, "cashAvailableForWithdrawal": 2500.0,
    "cashCall": 0.0, "longNonMarginableMarketValue": 7312.4, "totalCash": 2500.0,
    "cashDebitCallValue": 0.0, "unsettledCash": 0.0},
  "projectedBalances": {"cashAvailableForTrading": 2500.0, "cashAvailableForWithdrawal": 2500.0}},
 "aggregatedBalance": {"currentLiquidationValue": 9812.4, "liquidationValue": 9812.4}}
"""

PREFERENCES = """
{"accounts": [
  {"accountNumber": "41827365", "primaryAccount": true, "type": "BROKERAGE",
   "nickName": "Individual", "displayAcctId": "...365", "autoPositionEffect": false,
   "accountColor": "Green"},
  {"accountNumber": "59201846", "primaryAccount": false, "type": "BROKERAGE",
   "nickName": "Roth Contributory IRA", "displayAcctId": "...846", "autoPositionEffect": false,
   "accountColor": "Blue"}],
 "streamerInfo": [], "offers": []}
"""

_USD = (
    '{"assetType": "CURRENCY", "status": "ACTIVE", "symbol": "CURRENCY_USD",'
    ' "description": "USD currency", "instrumentId": 1, "closingPrice": 0.0}'
)
TRADE = f"""
{{"activityId": 88145023391, "time": "2025-03-14T14:31:07+0000", "accountNumber": "41827365",
 "type": "TRADE", "status": "VALID", "subAccount": "CASH",
 "tradeDate": "2025-03-14T14:31:07+0000", "settlementDate": "2025-03-17T00:00:00+0000",
 "positionId": 2974410553, "orderId": 1002873341290, "netAmount": -1902.52,
 "activityType": "EXECUTION",
 "transferItems": [
  {{"instrument": {_USD}, "amount": 0.0, "cost": 0.0, "feeType": "COMMISSION"}},
  {{"instrument": {_USD}, "amount": 0.0, "cost": -0.02, "feeType": "TAF_FEE"}},
  {{"instrument": {{"assetType": "EQUITY", "status": "ACTIVE", "symbol": "AAPL",
     "cusip": "037833100", "instrumentId": 1973757747, "closingPrice": 213.49,
     "type": "COMMON_STOCK"}},
   "amount": 10.0, "cost": -1902.5, "price": 190.25, "positionEffect": "OPENING"}}]}}
"""
DIVIDEND = f"""
{{"activityId": 88190044172, "time": "2025-03-20T09:00:00+0000",
 "description": "QUALIFIED DIVIDEND",
 "accountNumber": "41827365", "type": "DIVIDEND_OR_INTEREST", "status": "VALID",
 "subAccount": "CASH", "tradeDate": "2025-03-20T00:00:00+0000",
 "settlementDate": "2025-03-20T00:00:00+0000", "netAmount": 6.25,
 "transferItems": [
  {{"instrument": {_USD}, "amount": 6.25, "cost": 0.0}},
  {{"instrument": {{"assetType": "EQUITY", "status": "ACTIVE", "symbol": "AAPL",
     "cusip": "037833100", "instrumentId": 1973757747, "closingPrice": 214.0,
     "type": "COMMON_STOCK"}}, "amount": 0.0, "cost": 0.0}}]}}
"""
DEPOSIT = f"""
{{"activityId": 87955102210, "time": "2025-03-03T11:12:45+0000", "description": "ACH DEPOSIT",
 "accountNumber": "41827365", "type": "ACH_RECEIPT", "status": "VALID", "subAccount": "CASH",
 "tradeDate": "2025-03-03T00:00:00+0000", "netAmount": 5000.0,
 "transferItems": [{{"instrument": {_USD}, "amount": 5000.0, "cost": 0.0}}]}}
"""
JOURNAL = f"""
{{"activityId": 87990457731, "time": "2025-03-07T15:02:11+0000",
 "description": "JOURNAL FRM 59201846", "accountNumber": "41827365", "type": "JOURNAL",
 "status": "VALID", "subAccount": "CASH", "tradeDate": "2025-03-07T00:00:00+0000",
 "netAmount": 250.0,
 "transferItems": [{{"instrument": {_USD}, "amount": 250.0, "cost": 0.0}}]}}
"""


def transaction(text: str, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = scrubbed(decode(text), account_hash=MARGIN_HASH)
    payload.update(changes)
    return payload


class TestParseTime:
    @pytest.mark.parametrize(
        "text",
        [
            "2025-03-14T14:31:07+0000",
            "2025-03-14T14:31:07+00:00",
            "2025-03-14T14:31:07Z",
            "2025-03-14T14:31:07.000Z",
            "2025-03-14T09:31:07-0500",
            "2025-03-14T14:31:07",
        ],
    )
    def test_every_schwab_style_means_the_same_instant(self, text: str) -> None:
        assert parse_time(text) == datetime(2025, 3, 14, 14, 31, 7, tzinfo=UTC)
        assert parse_time(text).utcoffset() is not None

    def test_milliseconds_are_kept(self) -> None:
        assert parse_time("2024-03-28T21:10:42.123Z").microsecond == 123_000

    def test_a_bare_date_is_midnight_utc(self) -> None:
        assert parse_time("2025-03-20") == datetime(2025, 3, 20, tzinfo=UTC)

    @pytest.mark.parametrize(
        "value",
        [
            "yesterday",
            "2025-13-01T00:00:00Z",
            "",
            1710426667,
            None,
            # Schwab's exact shape (parsed by the fast path) with impossible or foreign parts.
            "2025-02-30T11:39:15+0000",
            "2025-06-16T24:00:00+0000",
            "2025-06-16T11:3a:15+0000",
        ],
    )
    def test_garbage_is_a_mapping_error(self, value: Any) -> None:
        with pytest.raises(MappingError):
            parse_time(value)


class TestMapTransaction:
    def test_reference_trade_maps_every_field(self) -> None:
        row = map_transaction(transaction(TRADE))

        assert row.external_id == "88145023391"
        assert row.posted_at == datetime(2025, 3, 14, 14, 31, 7, tzinfo=UTC)
        assert row.trade_date == date(2025, 3, 14)
        assert row.settlement_date == date(2025, 3, 17)
        assert (row.type, row.subtype) == (TransactionType.TRADE, "buy")
        assert row.status is TransactionStatus.POSTED
        assert row.amount == Decimal("-1902.52") and isinstance(row.amount, Decimal)
        assert row.currency == "USD"
        assert (row.symbol, row.quantity, row.price) == ("AAPL", Decimal("10.0"), Decimal("190.25"))
        assert row.fees == Decimal("0.02")
        assert row.description == "Bought 10 AAPL @ 190.25"
        assert len(row.content_hash) == 64

    def test_raw_payload_is_stored_json_safe_and_without_the_account_number(self) -> None:
        row = map_transaction(transaction(TRADE))

        assert row.raw is not None
        assert row.raw["accountNumberLast4"] == "7365"
        stored = json.loads(raw_payload_json(row.raw))
        assert stored["netAmount"] == "-1902.52"
        assert stored["transferItems"][0]["cost"] == "0.0"
        assert "41827365" not in raw_payload_json(row.raw)

    def test_raw_payload_maps_to_the_same_row_again(self) -> None:
        first = map_transaction(transaction(TRADE))
        assert first.raw is not None

        again = map_transaction(first.raw)
        stored = map_transaction(json.loads(raw_payload_json(first.raw)))

        assert again == first == stored
        assert again.content_hash == first.content_hash == stored.content_hash

    def test_stored_raw_payload_is_the_json_safe_copy(self) -> None:
        payload = transaction(TRADE)

        assert json.loads(raw_payload_json(payload)) == json_safe(payload)

    def test_dividend_is_money_in_with_its_symbol_but_no_quantity(self) -> None:
        row = map_transaction(transaction(DIVIDEND))

        assert (row.type, row.subtype) == (TransactionType.DIVIDEND, "dividend_or_interest")
        assert row.amount == Decimal("6.25")
        assert (row.symbol, row.quantity, row.price) == ("AAPL", None, None)
        assert row.fees == 0
        assert row.description == "QUALIFIED DIVIDEND"

    def test_interest_is_told_from_dividends_by_its_description(self) -> None:
        row = map_transaction(
            transaction(DEPOSIT, type="DIVIDEND_OR_INTEREST", description="CREDIT INTEREST")
        )
        assert row.type is TransactionType.INTEREST

    def test_ach_deposit_without_settlement_date(self) -> None:
        row = map_transaction(transaction(DEPOSIT))

        assert (row.type, row.subtype) == (TransactionType.DEPOSIT, "ach_receipt")
        assert row.amount == Decimal("5000.0")
        assert row.settlement_date is None
        assert row.symbol is None and row.quantity is None

    def test_withdrawal_stays_negative(self) -> None:
        row = map_transaction(
            transaction(DEPOSIT, type="ACH_DISBURSEMENT", netAmount=Decimal("-300.00"))
        )
        assert (row.type, row.amount) == (TransactionType.WITHDRAWAL, Decimal("-300.00"))

    @pytest.mark.parametrize(
        ("amount", "family"),
        [(Decimal("40"), TransactionType.DEPOSIT), (Decimal("-40"), TransactionType.WITHDRAWAL)],
    )
    def test_electronic_funds_follow_the_sign(
        self, amount: Decimal, family: TransactionType
    ) -> None:
        row = map_transaction(transaction(DEPOSIT, type="ELECTRONIC_FUND", netAmount=amount))
        assert row.type is family

    def test_journal_is_a_transfer_with_the_peer_number_masked(self) -> None:
        row = map_transaction(transaction(JOURNAL))

        assert (row.type, row.subtype) == (TransactionType.TRANSFER, "journal")
        assert row.description == "JOURNAL FRM ****1846"

    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            ("VALID", TransactionStatus.POSTED),
            ("PENDING", TransactionStatus.PENDING),
            ("INVALID", TransactionStatus.CANCELLED),
            ("UNKNOWN", TransactionStatus.PENDING),
            (None, TransactionStatus.POSTED),
        ],
    )
    def test_statuses(self, status: str | None, expected: TransactionStatus) -> None:
        payload = transaction(DEPOSIT)
        if status is None:
            del payload["status"]
        else:
            payload["status"] = status
        assert map_transaction(payload).status is expected

    def test_amounts_beyond_float_precision_stay_exact(self) -> None:
        row = map_transaction(transaction(DEPOSIT, netAmount=Decimal("12345678901.12345678")))
        assert row.amount == Decimal("12345678901.12345678")

    def test_float_and_string_inputs_become_their_decimal_text(self) -> None:
        as_float = map_transaction(transaction(DEPOSIT, netAmount=0.1))
        as_text = map_transaction(transaction(DEPOSIT, netAmount="0.1"))
        assert as_float.amount == as_text.amount == Decimal("0.1")

    def test_missing_net_amount_falls_back_to_the_cash_legs(self) -> None:
        payload = transaction(TRADE)
        del payload["netAmount"]
        assert map_transaction(payload).amount == Decimal("-1902.52")

    def test_sell_is_negative_quantity_and_positive_amount(self) -> None:
        payload = transaction(TRADE, netAmount=Decimal("1902.48"))
        leg = payload["transferItems"][2]
        leg["amount"], leg["cost"], leg["positionEffect"] = (
            Decimal(-10),
            Decimal("1902.5"),
            "CLOSING",
        )

        row = map_transaction(payload)

        assert (row.subtype, row.quantity, row.amount) == ("sell", Decimal(-10), Decimal("1902.48"))

    @pytest.mark.parametrize("missing", ["activityId", "time"])
    def test_rows_without_id_or_time_are_refused(self, missing: str) -> None:
        payload = transaction(DEPOSIT)
        del payload[missing]
        if missing == "time":
            del payload["tradeDate"]
        with pytest.raises(MappingError):
            map_transaction(payload)

    def test_boolean_amount_is_refused(self) -> None:
        with pytest.raises(MappingError):
            map_transaction(transaction(DEPOSIT, netAmount=True))

    def test_duplicate_ids_in_one_window_keep_the_last(self) -> None:
        rows = map_transactions(
            [transaction(DEPOSIT), transaction(DEPOSIT, netAmount=Decimal("5001"))]
        )
        assert [r.amount for r in rows] == [Decimal("5001")]


class TestOldestTransactionTime:
    def test_earliest_readable_time_wins_and_unreadable_ones_are_skipped(self) -> None:
        payloads = [
            {"time": "2025-03-14T14:31:07+0000"},
            {"time": "not a time"},
            {"tradeDate": "2025-03-13T00:00:00+0000"},
            {"time": "2025-03-14T09:00:00-05:00"},
            {},
        ]
        assert oldest_transaction_time(payloads) == datetime(2025, 3, 13, tzinfo=UTC)
        assert oldest_transaction_time([{"time": None}]) is None


class TestContentHash:
    def test_digest_is_pinned(self) -> None:
        # Stored rows carry this digest: a change of the canonical form would make every
        # re-fetched row look modified once. The value comes from the dict + json.dumps form.
        row = TransactionData(
            external_id="88145023391",
            posted_at=datetime(2025, 3, 14, 14, 31, 7, tzinfo=UTC),
            type=TransactionType.TRADE,
            status=TransactionStatus.POSTED,
            amount=Decimal("-1902.52"),
            subtype="buy",
            trade_date=date(2025, 3, 14),
            description='Bought 10 "AAPL" \u00e9\n',
            symbol="AAPL",
            quantity=Decimal("10"),
            price=Decimal("190.25"),
            fees=Decimal("0.02"),
        )

        assert row.content_hash == (
            "8c57849951bc15ab9af1abbfa6818b80bca3d03701cf6526257cd34fa4a6fb7b"
        )

    @pytest.mark.parametrize(
        "changes",
        [
            {},
            {"description": 'tab\t quote" back\\slash \x00 \u2028 \U0001f600 é', "symbol": None},
            {"quantity": Decimal("1E+5"), "price": Decimal("0.000000001"), "subtype": None},
            {"amount": Decimal("-12345678901234.12345678"), "trade_date": None},
            {"amount": None, "fees": None, "currency": None},  # not as declared: general path
            {"posted_at": datetime(2024, 1, 1, 5, tzinfo=timezone(timedelta(hours=-5)))},
        ],
    )
    def test_fast_form_equals_the_general_json_form(self, changes: dict[str, Any]) -> None:
        row = dataclasses.replace(map_transaction(transaction(TRADE)), **changes)
        general = hashlib.sha256(_canonical_json(row).encode()).hexdigest()

        assert transaction_content_hash(row) == row.content_hash == general

    def test_stable_under_key_order_and_transfer_item_order(self) -> None:
        payload = transaction(TRADE)
        shuffled = {key: payload[key] for key in reversed(list(payload))}
        shuffled["transferItems"] = list(reversed(payload["transferItems"]))

        assert map_transaction(shuffled).content_hash == map_transaction(payload).content_hash

    def test_stable_under_number_scale_and_time_style(self) -> None:
        plain = map_transaction(transaction(DEPOSIT))
        restyled = map_transaction(
            transaction(DEPOSIT, netAmount=Decimal("5000.00000"), time="2025-03-03T11:12:45Z")
        )
        assert restyled.content_hash == plain.content_hash

    def test_volatile_raw_fields_do_not_change_it(self) -> None:
        payload = transaction(TRADE)
        payload["transferItems"][2]["instrument"]["closingPrice"] = Decimal("250.01")
        assert (
            map_transaction(payload).content_hash
            == map_transaction(transaction(TRADE)).content_hash
        )

    @pytest.mark.parametrize(
        "change",
        [
            {"netAmount": Decimal("-1902.53")},
            {"status": "PENDING"},
            {"settlementDate": "2025-03-18T00:00:00+0000"},
            {"description": "CORRECTED"},
        ],
    )
    def test_any_normalised_change_changes_it(self, change: dict[str, Any]) -> None:
        assert (
            map_transaction(transaction(TRADE, **change)).content_hash
            != map_transaction(transaction(TRADE)).content_hash
        )


class TestMapAccount:
    def test_reference_margin_account_with_positions(self) -> None:
        prefs = preference_index(scrubbed(decode(PREFERENCES)))
        snap = map_account(scrubbed(decode(MARGIN_ACCOUNT)), preferences=prefs)

        account = snap.account
        assert account.external_id == MARGIN_HASH
        assert account.masked_number == "****7365"
        assert (account.name, account.type, account.currency) == (
            "Individual",
            AccountType.MARGIN,
            "USD",
        )
        balance = snap.balance
        assert balance.current == Decimal("17337.67")
        assert balance.available == Decimal("3120.55")
        assert balance.cash == Decimal("3120.55")
        assert balance.buying_power == Decimal("6241.10")
        assert balance.liquidation_value == Decimal("17337.67")
        assert balance.long_market_value == Decimal("12966.75")
        assert balance.short_market_value == Decimal("0.0")
        assert balance.money_market_fund == Decimal("1250.37")

        assert snap.positions is not None
        by_symbol = {p.symbol: p for p in snap.positions}
        assert set(by_symbol) == {"AAPL", "VOO", "SWVXX"}
        aapl = by_symbol["AAPL"]
        assert (aapl.cusip, aapl.asset_type, aapl.description) == ("037833100", "equity", None)
        assert aapl.quantity == Decimal("25.0")
        assert aapl.average_price == Decimal("171.4025")
        assert aapl.market_value == Decimal("4563.75")
        assert aapl.cost_basis == Decimal("4285.0625")
        assert aapl.unrealized_pl == Decimal("278.6875")
        assert by_symbol["VOO"].asset_type == "etf"
        assert by_symbol["VOO"].description == "VANGUARD S&P 500 ETF"
        assert by_symbol["SWVXX"].asset_type == "cash_equivalent"

    def test_reference_cash_account_without_positions_is_a_roth_ira(self) -> None:
        snaps = map_accounts(
            [scrubbed(decode(CASH_ACCOUNT))], preferences=scrubbed(decode(PREFERENCES))
        )

        (snap,) = snaps
        assert (snap.account.type, snap.account.name) == (
            AccountType.ROTH_IRA,
            "Roth Contributory IRA",
        )
        assert snap.positions is None  # not "sold everything"
        assert snap.balance.current == Decimal("9812.4")
        assert snap.balance.cash == Decimal("2500.0")
        assert snap.balance.available == Decimal("2500.0")
        assert snap.balance.buying_power == Decimal("2500.0")
        assert snap.balance.long_market_value == Decimal("7312.4")

    def test_without_preferences_the_name_says_type_and_last_four(self) -> None:
        snap = map_account(scrubbed(decode(MARGIN_ACCOUNT)))
        assert snap.account.name == "Schwab Margin …7365"

    def test_ambiguous_last_four_in_preferences_is_ignored(self) -> None:
        prefs = {
            "accounts": [
                {"accountNumberLast4": "7365", "nickName": "Roth IRA"},
                {"accountNumberLast4": "7365", "nickName": "Other"},
            ]
        }
        snap = map_account(scrubbed(decode(MARGIN_ACCOUNT)), preferences=preference_index(prefs))
        assert snap.account.type is AccountType.MARGIN

    def test_short_position_has_negative_quantity_and_cost(self) -> None:
        payload = scrubbed(decode(MARGIN_ACCOUNT))
        position = payload["securitiesAccount"]["positions"][0]
        position.update(
            longQuantity=Decimal(0),
            shortQuantity=Decimal(10),
            averagePrice=Decimal("50"),
            marketValue=Decimal("-480"),
        )

        aapl = {p.symbol: p for p in map_account(payload).positions or ()}["AAPL"]

        assert aapl.quantity == Decimal(-10)
        assert aapl.cost_basis == Decimal(-500)
        assert aapl.unrealized_pl == Decimal(20)

    def test_option_cost_basis_uses_the_multiplier(self) -> None:
        payload = scrubbed(decode(MARGIN_ACCOUNT))
        position = payload["securitiesAccount"]["positions"][0]
        position["instrument"] = {"assetType": "OPTION", "symbol": "AAPL  250620C00200000"}
        position.update(
            longQuantity=Decimal(2), averagePrice=Decimal("3.15"), marketValue=Decimal("700")
        )

        (option,) = [p for p in map_account(payload).positions or () if p.asset_type == "option"]

        assert option.cost_basis == Decimal("630")
        assert option.unrealized_pl == Decimal("70")

    def test_duplicate_instruments_are_merged_exactly(self) -> None:
        payload = scrubbed(decode(MARGIN_ACCOUNT))
        positions = payload["securitiesAccount"]["positions"]
        positions.append(json.loads(json.dumps(positions[0], default=str), parse_float=Decimal))

        merged = {p.symbol: p for p in map_account(payload).positions or ()}

        assert len(merged) == 3
        assert merged["AAPL"].quantity == Decimal(50)
        assert merged["AAPL"].market_value == Decimal("9127.50")

    def test_position_without_symbol_falls_back_to_cusip(self) -> None:
        payload = scrubbed(decode(MARGIN_ACCOUNT))
        del payload["securitiesAccount"]["positions"][1]["instrument"]["symbol"]
        keys = {p.position_key for p in map_account(payload).positions or ()}
        assert "922908363" in keys

    def test_account_without_hash_is_refused(self) -> None:
        with pytest.raises(MappingError, match="accountHash"):
            map_account(decode(MARGIN_ACCOUNT))

    def test_balances_are_all_optional(self) -> None:
        payload = {"securitiesAccount": {"type": "CASH", "accountHash": CASH_HASH}}
        snap = map_account(payload)
        assert snap.balance.values() == (None,) * 8


class TestAccountType:
    @pytest.mark.parametrize(
        ("kind", "labels", "expected"),
        [
            ("MARGIN", ("Individual",), AccountType.MARGIN),
            ("CASH", (), AccountType.CASH),
            ("CASH", ("Roth Contributory IRA",), AccountType.ROTH_IRA),
            ("CASH", ("Traditional IRA",), AccountType.IRA),
            ("CASH", ("Rollover IRA",), AccountType.IRA),
            ("CASH", ("Miranda's account",), AccountType.CASH),
            (None, (), AccountType.OTHER),
        ],
    )
    def test_from_schwab_type_and_labels(
        self, kind: str | None, labels: tuple[str, ...], expected: AccountType
    ) -> None:
        assert account_type(kind, *labels) is expected


class TestSimulatorPayloads:
    """The simulator's generator is the closest thing to real data we have offline."""

    START = datetime(2025, 6, 16, 12, 0, tzinfo=UTC)

    @staticmethod
    def as_client_sees(payload: Any, account_hash: str) -> Any:
        return scrub_account_numbers(
            decode(render.dumps(payload).decode()), account_hash=account_hash
        )

    def test_every_generated_kind_maps_with_exact_amounts(self) -> None:
        data = create_dataset(seed=20240229, start=self.START, whale_years=1)
        acct = data.users["whale"].accounts[0]
        now = epoch(self.START)
        rows = data.window(acct, now - 30 * 86_400, now, now)
        seen: set[Kind] = set()
        for txn in rows:
            payload = self.as_client_sees(render.transaction_json(txn, acct, now), acct.hash)
            row = map_transaction(payload)
            seen.add(Kind(txn.kind))
            assert row.external_id == str(txn.activity_id)
            assert row.amount == Decimal(txn.net_at(now)).scaleb(-2)
            assert row.fees == Decimal(txn.sec_fee_cents + txn.taf_fee_cents).scaleb(-2)
            if Kind(txn.kind) in (Kind.BUY, Kind.SELL):
                sign = 1 if Kind(txn.kind) is Kind.BUY else -1
                assert row.quantity == sign * txn.quantity
                assert row.price == Decimal(txn.price_cents).scaleb(-2)
                assert row.symbol == INSTRUMENTS[txn.instrument].symbol
        assert {Kind.BUY, Kind.SELL, Kind.DIVIDEND, Kind.ACH_IN} <= seen

    def test_pending_and_cancelled_generated_rows(self) -> None:
        data = create_dataset(seed=20240229, start=self.START, whale_years=1)
        acct = data.users["demo"].accounts[0]
        events = {e.name: e for e in data.scripted_events(acct)}
        txn = data.find(acct, events["pending_withdrawal_cancelled"].activity_id, epoch(self.START))
        assert isinstance(txn, Txn)

        def status_at(moment: int) -> TransactionStatus:
            payload = self.as_client_sees(render.transaction_json(txn, acct, moment), acct.hash)
            return map_transaction(payload).status

        start = epoch(self.START)
        assert status_at(start) is TransactionStatus.PENDING
        assert status_at(start + 13 * 3_600) is TransactionStatus.CANCELLED

    def test_generated_accounts_add_up(self) -> None:
        data = create_dataset(seed=20240229, start=self.START, whale_years=1)
        for acct in data.users["demo"].accounts:
            payload = self.as_client_sees(render.account_json(acct, positions=True), acct.hash)
            snap = map_account(payload)
            assert snap.positions is not None
            invested = sum((p.market_value for p in snap.positions), Decimal(0))
            assert snap.balance.cash is not None
            assert snap.balance.current == snap.balance.cash + invested
            assert snap.account.masked_number == "****" + acct.number[-4:]
