"""Exact numbers and no plain account numbers in what the Schwab client hands upward."""

from __future__ import annotations

import copy
import json
from decimal import Decimal

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

    def test_input_is_not_modified(self) -> None:
        payload = {"securitiesAccount": {"accountNumber": "41827365"}}
        original = copy.deepcopy(payload)
        scrub_account_numbers(payload)
        assert payload == original
