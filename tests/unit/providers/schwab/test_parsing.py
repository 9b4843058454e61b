"""Exact numbers and no plain account numbers in what the Schwab client hands upward."""

from __future__ import annotations

import copy
import json
import random
import re
from decimal import Decimal
from typing import Any

import httpx
import pytest

from dashtam.providers.schwab.parsing import MalformedPayload, decode_json, scrub_account_numbers


class TestDecodeJson:
    def test_fractions_are_decimals_and_integers_stay_ints(self) -> None:
        body = decode_json(
            httpx.Response(200, content=b'{"a": 0.1, "b": 190.25, "id": 88145023391}')
        )
        assert body == {"a": Decimal("0.1"), "b": Decimal("190.25"), "id": 88145023391}
        assert isinstance(body["a"], Decimal) and isinstance(body["id"], int)

    def test_sums_stay_exact(self) -> None:
        body = decode_json(httpx.Response(200, content=b"[0.1, 0.2]"))
        assert body[0] + body[1] == Decimal("0.3")

    @pytest.mark.parametrize(
        "content", [b"", b"   ", b"{bad json", b'{"a": NaN}', b"[Infinity]", b"\xff\xfe"]
    )
    def test_malformed_bodies_are_refused(self, content: bytes) -> None:
        with pytest.raises(MalformedPayload):
            decode_json(httpx.Response(200, content=content))


class TestScrubAccountNumbers:
    def test_account_number_becomes_last4_and_hash(self) -> None:
        payload = [{"securitiesAccount": {"type": "MARGIN", "accountNumber": "41827365"}}]
        out = scrub_account_numbers(payload, hashes={"41827365": "HASH1"})
        assert out == [
            {
                "securitiesAccount": {
                    "type": "MARGIN",
                    "accountNumberLast4": "7365",
                    "accountHash": "HASH1",
                }
            }
        ]

    def test_single_account_hash_labels_every_occurrence(self) -> None:
        payload = [
            {"activityId": 1, "accountNumber": "41827365"},
            {"activityId": 2, "accountNumber": "41827365"},
        ]
        out = scrub_account_numbers(payload, account_hash="H")
        assert [row["accountHash"] for row in out] == ["H", "H"]
        assert "41827365" not in json.dumps(out)

    def test_numbers_in_free_text_are_masked(self) -> None:
        payload = [
            {"accountNumber": "41827365", "description": "JOURNAL FRM 59201846"},
            {"accountNumber": "41827365", "note": "moved from 41827365 today"},
        ]
        out = scrub_account_numbers(payload, known_numbers={"59201846"})
        assert out[0]["description"] == "JOURNAL FRM ****1846"
        assert out[1]["note"] == "moved from ****7365 today"

    def test_unknown_long_digit_runs_in_descriptions_are_masked(self) -> None:
        out = scrub_account_numbers({"description": "TRANSFER TO 12345678901 OK"})
        assert out == {"description": "TRANSFER TO ****8901 OK"}

    def test_identifiers_and_amounts_are_left_alone(self) -> None:
        payload = {
            "description": "AAPL 190.25 x 10",
            "cusip": "037833100",
            "orderId": 1002873341290,
            "time": "2025-03-14T14:31:07+0000",
        }
        assert scrub_account_numbers(payload) == payload

    def test_integer_account_numbers_are_handled(self) -> None:
        out = scrub_account_numbers({"accountNumber": 41827365})
        assert out == {"accountNumberLast4": "7365"}

    def test_a_number_met_only_deep_inside_a_later_row_is_masked_everywhere(self) -> None:
        # The walk first guesses the numbers from the rows' own members; a number that only
        # appears nested later on must still be masked in the strings before it.
        payload = [
            {"accountNumber": "41827365", "note": "from 73310529 and 41827365"},
            {"accountNumber": "41827365", "legs": [{"accountNumber": "73310529"}]},
        ]
        out = scrub_account_numbers(payload, account_hash="H")
        assert out[0]["note"] == "from ****0529 and ****7365"
        assert out[1]["legs"] == [{"accountNumberLast4": "0529", "accountHash": "H"}]

    def test_input_is_not_modified(self) -> None:
        payload = {"securitiesAccount": {"accountNumber": "41827365"}}
        original = copy.deepcopy(payload)
        scrub_account_numbers(payload)
        assert payload == original


def _reference_scrub(value: Any, numbers: list[str], labels: dict[str, str], key: str = "") -> Any:
    """The rule stated plainly (slow, recursive): what the scrubber must produce."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for item_key, item in value.items():
            if item_key == "accountNumber" and isinstance(item, str | int):
                out["accountNumberLast4"] = str(item)[-4:]
                if str(item) in labels:
                    out.setdefault("accountHash", labels[str(item)])
            else:
                out[item_key] = _reference_scrub(item, numbers, labels, item_key)
        return out
    if isinstance(value, list):
        return [_reference_scrub(item, numbers, labels, key) for item in value]
    if isinstance(value, str):
        for number in numbers:
            value = value.replace(number, "****" + number[-4:])
        if key == "description":
            value = re.sub(r"(?<![\d.])\d{8,12}(?![\d.])", lambda m: "****" + m[0][-4:], value)
        return value
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []


class TestScrubLargePayload:
    def test_no_plain_number_survives_anywhere_in_a_large_payload(self) -> None:
        # 20,000 rows shaped like Schwab transactions, with the account numbers in every place
        # they could leak: the member itself (text and integer), free text, other strings,
        # nested objects and arrays, and a number that only appears deep inside one row.
        own, peer, deep, known = "41827365", "59201846", "73310529", "66120034"
        rng = random.Random(5)
        rows: list[dict[str, Any]] = []
        for i in range(20_000):
            row: dict[str, Any] = {
                "activityId": 80_000_000_000 + i,
                "time": "2025-03-14T14:31:07+0000",
                "accountNumber": own if i % 3 else int(own),
                "type": rng.choice(["TRADE", "JOURNAL", "ACH_RECEIPT"]),
                "netAmount": Decimal("-1902.52"),
                "orderId": 1_000_041_827_365 + i,
                "transferItems": [
                    {"instrument": {"symbol": "AAPL", "cusip": "037833100"}, "amount": 10},
                    {"instrument": {"symbol": "CURRENCY_USD"}, "cost": Decimal("0.02")},
                ],
            }
            if i % 7 == 0:
                row["description"] = f"JOURNAL FRM {peer}"
            if i % 11 == 0:
                row["note"] = f"moved from {own} to {known} today"
            if i % 13 == 0:
                row["description"] = [f"TRANSFER TO 1234567890{i % 10}", "AAPL 190.25 x 10"]
            if i == 12_345:
                row["transferItems"].append({"nested": [{"accountNumber": deep, "x": [deep]}]})
            rows.append(row)
        original = copy.deepcopy(rows)

        out = scrub_account_numbers(rows, known_numbers={known}, account_hash="HASH")

        # Every string (member names included) is free of the numbers; integer ids such as
        # `orderId` are identifiers that merely contain the digits and are left alone.
        text = "\n".join(_strings(out))
        for number in (own, peer, deep, known):
            assert number not in text, number
        assert "accountNumber" not in _strings(out)
        assert all(r["accountNumberLast4"] == "7365" and r["accountHash"] == "HASH" for r in out)
        assert out[12_345]["transferItems"][-1]["nested"][0]["x"] == ["****0529"]
        assert out[0]["note"] == "moved from ****7365 to ****0034 today"
        # Exactly the stated rule, on every row; identifiers and amounts untouched; input kept.
        numbers = sorted({own, peer, deep, known}, key=len, reverse=True)
        assert out == _reference_scrub(rows, numbers, {own: "HASH", deep: "HASH"})
        assert rows == original
        assert out[5]["orderId"] == rows[5]["orderId"] and out[5]["netAmount"] == Decimal(
            "-1902.52"
        )
