"""The text path for transaction lists gives exactly what the general path gives, or steps aside."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashtam.providers.base import RawPayload
from dashtam.providers.schwab.bulk_text import read_transactions
from dashtam.providers.schwab.parsing import reject_constant, scrub_account_numbers

NUMBER = "79305492"
HASH = "C4E311BE6005A15EE3BAA152749EDEC8"


def general(content: bytes, account_hash: str | None = HASH) -> Any:
    """What the general path hands upward for the same body."""
    body = json.loads(content, parse_float=Decimal, parse_constant=reject_constant)
    return scrub_account_numbers(body, account_hash=account_hash)


def assert_same_as_general(content: bytes, account_hash: str | None = HASH) -> list[Any]:
    fast = read_transactions(content, account_hash)
    assert fast is not None, "the text path stepped aside for a plain reply"
    assert fast == general(content, account_hash)
    for payload in fast:
        assert type(payload) is RawPayload
        # Each element's text is the element: same members, same exact numbers.
        assert json.loads(payload.source, parse_float=Decimal) == payload
    return fast


def trade(activity_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "activityId": activity_id,
        "time": "2025-02-28T19:34:48+0000",
        "accountNumber": NUMBER,
        "type": "TRADE",
        "netAmount": Decimal("-41727.46"),
        "transferItems": [
            {
                "instrument": {
                    "assetType": "CURRENCY",
                    "symbol": "CURRENCY_USD",
                    "description": "USD currency",
                    "closingPrice": Decimal("0.0"),
                },
                "amount": Decimal("0.0"),
                "cost": Decimal("-0.02"),
                "feeType": "SEC_FEE",
            },
            {
                "instrument": {
                    "assetType": "EQUITY",
                    "symbol": "MSFT",
                    "cusip": "594918104",
                    "description": "MICROSOFT CORP",
                    "instrumentId": 1878252461,
                },
                "amount": Decimal("97.0"),
                "cost": Decimal("-41727.44"),
                "price": Decimal("430.18"),
            },
        ],
        **extra,
    }


def to_json(value: Any, *, spaced: bool = False) -> str:
    """JSON as an institution writes it: decimals as number literals with their own digits."""
    comma, colon = (", ", ": ") if spaced else (",", ":")
    if isinstance(value, dict):
        members = (f"{json.dumps(k)}{colon}{to_json(v, spaced=spaced)}" for k, v in value.items())
        return "{" + comma.join(members) + "}"
    if isinstance(value, list):
        return "[" + comma.join(to_json(v, spaced=spaced) for v in value) + "]"
    if isinstance(value, Decimal):
        return format(value, "f")
    return json.dumps(value, ensure_ascii=False)


def body_of(rows: list[Any], *, spaced: bool = False) -> bytes:
    return to_json(rows, spaced=spaced).encode()


class TestPlainReplies:
    @pytest.mark.parametrize("spaced", [False, True])
    def test_a_window_of_trades_matches_the_general_path(self, spaced: bool) -> None:
        rows = [trade(i) for i in range(1, 6)]
        fast = assert_same_as_general(body_of(rows, spaced=spaced))
        assert all(p["accountNumberLast4"] == "5492" and p["accountHash"] == HASH for p in fast)
        assert NUMBER not in "".join(p.source for p in fast)

    def test_numbers_keep_the_institutions_exact_digits(self) -> None:
        (payload,) = assert_same_as_general(body_of([trade(1)]))
        assert payload["netAmount"] == Decimal("-41727.46")
        assert "-41727.46" in payload.source and "430.18" in payload.source

    def test_empty_list(self) -> None:
        assert read_transactions(b" [ ] ", HASH) == []

    def test_known_number_inside_text_is_masked_but_not_inside_number_literals(self) -> None:
        row = trade(
            1,
            description=f"TRANSFER TO {NUMBER} DONE",
            memo=f"ref{NUMBER}x",
            orderId=int(f"1{NUMBER}1"),
        )
        (payload,) = assert_same_as_general(body_of([row]))
        assert payload["description"] == "TRANSFER TO ****5492 DONE"
        assert payload["memo"] == "ref****5492x"
        assert payload["orderId"] == int(f"1{NUMBER}1")

    def test_long_digit_runs_in_free_text_are_masked_everywhere(self) -> None:
        row = trade(1, description="JOURNAL FRM 59201846 TO 1234567890123 AT 12.34567890")
        row["transferItems"][1]["instrument"]["description"] = "FUND 987654321"
        (payload,) = assert_same_as_general(body_of([row]))
        assert payload["description"] == "JOURNAL FRM ****1846 TO 1234567890123 AT 12.34567890"
        assert payload["transferItems"][1]["instrument"]["description"] == "FUND ****4321"

    def test_integer_and_nested_account_numbers(self) -> None:
        row = trade(1, accountNumber=int(NUMBER))
        row["transferItems"][0]["accountNumber"] = "55512345"
        row["note"] = "from 55512345"
        fast = assert_same_as_general(body_of([row, trade(2)]))
        assert "55512345" not in "".join(p.source for p in fast)

    def test_without_an_account_hash(self) -> None:
        (payload,) = assert_same_as_general(body_of([trade(1)]), account_hash=None)
        assert "accountHash" not in payload

    def test_unicode_text_is_kept(self) -> None:
        assert_same_as_general(body_of([trade(1, description="café ✓ 20 €")]))


class TestUnusualRepliesTakeTheGeneralPath:
    @pytest.mark.parametrize(
        "content",
        [
            b'[{"activityId":1,"description":"say \\"hi\\""}]',  # an escape
            b'[{"activityId":1,"description":"\\u0037\\u0039305492"}]',  # an escaped digit
            b'[{"activityId":1,"accountNumber":"79305492","accountHash":"X"}]',
            b'[{"activityId":1,"accountNumber":"79305492","accountNumberLast4":"1"}]',
            b'[{"activityId":1,"accountNumber":null}]',
            b'[{"activityId":1,"accountNumber":true}]',
            b'[{"activityId":1,"accountNumber":7930549.2}]',
            b'[{"activityId":1,"description":["a 12345678"]}]',
            b'[{"activityId":1,"description":{"text":"12345678"}}]',
            b'[{"activityId":1,"accountNumber":"79305492","x":{"79305492":1}}]',
            b'{"activityId":1}',
            b"[1, 2]",
            b'[{"activityId":1}] x',
            b'[{"activityId":1},]',
            b'[{"activityId":1}',
            b'\xef\xbb\xbf[{"activityId":1}]',
            b'[{"activityId":"\xff"}]',
            b'[{"activityId":1,"x":NaN}]',
            b"",
        ],
    )
    def test_steps_aside(self, content: bytes) -> None:
        assert read_transactions(content, HASH) is None


# --- generated replies ------------------------------------------------------------------------

_piece = st.sampled_from([*"ab XY.-/:{}[],0123456789é", NUMBER, "55512345", "123456789012"])
_text = st.lists(_piece, max_size=12).map("".join)
_number = st.decimals(
    allow_nan=False, allow_infinity=False, places=4, min_value=-(10**6), max_value=10**6
)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12), _number, _text)
_key = st.sampled_from(["amount", "cost", "symbol", "memo", "description", "type", "items"])
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(_key, inner, max_size=4),
        st.fixed_dictionaries({"accountNumber": st.sampled_from([NUMBER, "55512345", 7788])}),
    ),
    max_leaves=12,
)
_row = st.fixed_dictionaries(
    {"activityId": st.integers(1, 10**11), "accountNumber": st.sampled_from([NUMBER, "55512345"])},
    optional={"description": _text, "memo": _text, "transferItems": _value, "extra": _value},
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_row, max_size=5), st.booleans())
def test_generated_replies_match_the_general_path_or_step_aside(
    rows: list[dict[str, Any]], spaced: bool
) -> None:
    content = body_of(rows, spaced=spaced)
    fast = read_transactions(content, HASH)
    if fast is None:
        # Only the shapes listed above may step aside; these generated rows contain neither
        # escapes nor hash members, so only a container under "description" does.
        assert b'"description":[' in content.replace(b" ", b"") or b'"description":{' in (
            content.replace(b" ", b"")
        )
        return
    assert fast == general(content)
    for payload in fast:
        assert json.loads(payload.source, parse_float=Decimal) == payload
