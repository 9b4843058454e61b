"""Reading Schwab payloads: exact numbers, and plain account numbers kept inside the client.

Schwab puts the plain account number in every account, transaction and preference payload
(`accountNumber`). Nothing above the provider may see it: each `accountNumber` member is
replaced by `accountNumberLast4` (plus `accountHash`, the opaque id the API uses in URLs, when
known), and a known number appearing inside free text (`"JOURNAL FRM 59201846"`) is masked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import httpx

_MASK = "****"
#: A long digit run in free text is most likely an account number; mask all but its last 4.
_DIGIT_RUN = re.compile(r"(?<![\d.])\d{8,12}(?![\d.])")
_FREE_TEXT_KEYS = frozenset({"description"})


class MalformedPayload(ValueError):
    """The body is not the JSON we expected."""


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not money; json would otherwise accept them silently.
    raise MalformedPayload(f"non-finite number {name} in payload")


def decode_json(response: httpx.Response) -> Any:
    """Parse a JSON body with every fractional number as `Decimal` (never float).

    Args:
        response: The institution's response (already decompressed by httpx).

    Returns:
        The decoded value.

    Raises:
        MalformedPayload: Empty, invalid or non-finite JSON.
    """
    content = response.content
    if not content.strip():
        raise MalformedPayload("empty body")
    try:
        return json.loads(content, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedPayload("body is not valid JSON") from exc


def last4(number: str) -> str:
    """The last four characters of an account number."""
    return number[-4:]


def _collect_numbers(value: Any, found: set[str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "accountNumber" and isinstance(item, str | int) and str(item):
                found.add(str(item))
            else:
                _collect_numbers(item, found)
    elif isinstance(value, list):
        for item in value:
            _collect_numbers(item, found)


def _mask_text(text: str, numbers: list[str], free_text: bool) -> str:
    for number in numbers:
        if number in text:
            text = text.replace(number, _MASK + last4(number))
    if free_text:
        text = _DIGIT_RUN.sub(lambda m: _MASK + last4(m.group(0)), text)
    return text


def _scrub(
    value: Any,
    numbers: list[str],
    hashes: Mapping[str, str],
    account_hash: str | None,
    key: str | None,
) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for item_key, item in value.items():
            if item_key == "accountNumber" and isinstance(item, str | int):
                number = str(item)
                out["accountNumberLast4"] = last4(number)
                resolved = account_hash or hashes.get(number)
                if resolved is not None:
                    out.setdefault("accountHash", resolved)
                continue
            out[item_key] = _scrub(item, numbers, hashes, account_hash, item_key)
        return out
    if isinstance(value, list):
        return [_scrub(item, numbers, hashes, account_hash, key) for item in value]
    if isinstance(value, str):
        return _mask_text(value, numbers, key in _FREE_TEXT_KEYS)
    return value


def scrub_account_numbers(
    payload: Any,
    *,
    known_numbers: Iterable[str] = (),
    hashes: Mapping[str, str] | None = None,
    account_hash: str | None = None,
) -> Any:
    """Return a copy of `payload` without plain account numbers.

    Args:
        payload: Decoded JSON.
        known_numbers: Plain numbers to mask wherever they appear in text (the payload's own
            `accountNumber` values are always included).
        hashes: Plain number -> account hash, to label each account with its hash.
        account_hash: The hash every `accountNumber` in this payload belongs to (single-account
            endpoints), overriding `hashes`.

    Returns:
        The scrubbed copy (the input is not modified).
    """
    found: set[str] = set(known_numbers) | set((hashes or {}).keys())
    _collect_numbers(payload, found)
    # Longest first so a number that contains another is masked whole.
    numbers = sorted((n for n in found if len(n) >= 5), key=len, reverse=True)
    return _scrub(payload, numbers, hashes or {}, account_hash, None)
