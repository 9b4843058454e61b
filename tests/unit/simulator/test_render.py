"""Schwab-shaped JSON: exact money, transfer items that add up, timestamps, account shapes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from dashtam.simulator.catalog import INSTRUMENTS
from dashtam.simulator.data import DAY, Dataset, Kind
from dashtam.simulator.render import (
    account_json,
    cents,
    dumps,
    number,
    schwab_time,
    transaction_json,
    transactions_json_bytes,
)

START = datetime(2025, 6, 16, 12, 0, tzinfo=UTC)
_NUMBER = re.compile(rb"(?<=[:\[,])-?\d+(?:\.\d+)?(?=[,\]}])")


def make_dataset() -> Dataset:
    return Dataset(seed=11, start=START, whale_years=6)


def decimals_of(raw: bytes) -> int:
    """Most digits after the point of any JSON number in `raw`."""
    return max((len(m.split(b".")[1]) for m in _NUMBER.findall(raw) if b"." in m), default=0)


class TestNumbers:
    @pytest.mark.parametrize("text", ["0.1", "1902.52", "-0.02", "171.4025", "123456789.99"])
    def test_json_prints_exactly_the_decimal(self, text: str) -> None:
        assert json.dumps(number(Decimal(text))) == text

    def test_cents_are_exact_for_large_sums(self) -> None:
        assert json.dumps(cents(-23_930_005_634)) == "-239300056.34"

    def test_refuses_values_a_float_cannot_carry(self) -> None:
        with pytest.raises(ValueError, match="exactly"):
            number(Decimal("12345678901234567.89"))


class TestTransactionJson:
    def test_trade_legs_add_up_to_net_amount_with_exact_decimals(self) -> None:
        dataset = make_dataset()
        acct = dataset.users["whale"].accounts[0]
        now = dataset.start
        rows = dataset.window(acct, now - 30 * DAY, now, now, types=frozenset({"TRADE"}))
        assert rows
        for row in rows[:300]:
            body = transaction_json(row, acct, now)
            raw = dumps(body)
            assert decimals_of(raw) <= 4
            parsed = json.loads(raw, parse_float=Decimal)
            legs = parsed["transferItems"]
            assert sum(leg["cost"] for leg in legs) == parsed["netAmount"]
            security = legs[-1]
            assert security["instrument"]["symbol"] == INSTRUMENTS[row.instrument].symbol
            assert abs(security["amount"]) == row.quantity
            assert {leg.get("feeType") for leg in legs[:-1]} == {"COMMISSION", "SEC_FEE", "TAF_FEE"}
            if row.kind == Kind.SELL:
                assert security["amount"] < 0 and parsed["netAmount"] > 0
                assert security["positionEffect"] == "CLOSING"
            else:
                assert security["amount"] > 0 and parsed["netAmount"] < 0

    def test_pending_rows_have_no_settlement_date_and_show_their_pending_amount(self) -> None:
        dataset = make_dataset()
        acct = dataset.users["demo"].accounts[0]
        events = {e.name: e.activity_id for e in dataset.scripted_events(acct)}
        row = dataset.find(acct, events["pending_dividend_posts"], dataset.start)
        assert row is not None
        pending = transaction_json(row, acct, dataset.start)
        posted = transaction_json(row, acct, dataset.start + DAY)
        assert pending["status"] == "PENDING" and "settlementDate" not in pending
        assert pending["netAmount"] == 18.4
        assert posted["status"] == "VALID" and posted["netAmount"] == 18.42
        assert posted["activityId"] == pending["activityId"]

    def test_cancelled_rows_render_as_invalid(self) -> None:
        dataset = make_dataset()
        acct = dataset.users["demo"].accounts[0]
        events = {e.name: e.activity_id for e in dataset.scripted_events(acct)}
        row = dataset.find(acct, events["pending_withdrawal_cancelled"], dataset.start + DAY)
        assert row is not None
        assert transaction_json(row, acct, dataset.start + DAY)["status"] == "INVALID"

    def test_time_uses_the_offset_without_colon(self) -> None:
        assert schwab_time(int(START.timestamp())) == "2025-06-16T12:00:00+0000"


class TestTransactionListFastPath:
    @pytest.mark.parametrize("user", ["whale", "demo"])
    @pytest.mark.parametrize("hours", [0, 5, 13, 30, 49])
    def test_bytes_equal_the_general_renderer_in_every_state(self, user: str, hours: int) -> None:
        # Around the start, rows are pending, posted and cancelled (shown as INVALID here);
        # the fast path must write exactly the bytes of `transaction_json` + `dumps`.
        dataset = make_dataset()
        now = dataset.start + hours * 3600
        for acct in dataset.users[user].accounts:
            rows = dataset.window(acct, now - 120 * DAY, now, now, include_cancelled=True)
            assert rows
            expected = dumps([transaction_json(row, acct, now) for row in rows])
            assert transactions_json_bytes(rows, acct, now) == expected

    def test_every_kind_and_status_is_covered_by_the_comparison(self) -> None:
        dataset = make_dataset()
        acct = dataset.users["whale"].accounts[0]
        now = dataset.start
        rows = dataset.window(acct, now - 120 * DAY, now, now, include_cancelled=True)
        statuses = {row["status"] for row in json.loads(transactions_json_bytes(rows, acct, now))}
        assert {row.kind for row in rows} == set(Kind)
        assert statuses == {"VALID", "PENDING", "INVALID"}

    def test_empty_list(self) -> None:
        acct = make_dataset().users["demo"].accounts[0]
        assert transactions_json_bytes([], acct, 0) == b"[]"


class TestAccountJson:
    def test_positions_only_when_asked_and_values_add_up(self) -> None:
        acct = make_dataset().users["demo"].accounts[0]
        without = account_json(acct, positions=False)
        assert "positions" not in without["securitiesAccount"]
        body = json.loads(dumps(account_json(acct, positions=True)), parse_float=Decimal)
        securities = body["securitiesAccount"]
        assert len(securities["positions"]) == len(acct.holdings)
        total = sum(p["marketValue"] for p in securities["positions"])
        liquidation = securities["currentBalances"]["liquidationValue"]
        assert total + acct.cash == liquidation
        assert body["aggregatedBalance"]["liquidationValue"] == liquidation

    def test_cash_account_has_cash_balance_fields(self) -> None:
        acct = make_dataset().users["demo"].accounts[1]
        securities = account_json(acct, positions=False)["securitiesAccount"]
        assert securities["type"] == "CASH"
        assert "cashAvailableForWithdrawal" in securities["currentBalances"]
