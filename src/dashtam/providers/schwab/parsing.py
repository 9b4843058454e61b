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

MASK = "****"
#: A long digit run in free text is most likely an account number; mask all but its last 4.
_DIGIT_RUN = re.compile(r"(?<![\d.])\d{8,12}(?![\d.])")
_FREE_TEXT_KEYS = frozenset({"description"})
#: Leaf types of decoded JSON: the number collector never needs to look inside them.
_SCALARS: frozenset[type] = frozenset({str, int, Decimal, float, bool, type(None)})


class MalformedPayload(ValueError):
    """The body is not the JSON we expected."""


def reject_constant(name: str) -> Any:
    """Refuse NaN and Infinity: they are not money, and json would accept them silently."""
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
        return json.loads(content, parse_float=Decimal, parse_constant=reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedPayload("body is not valid JSON") from exc


def last4(number: str) -> str:
    """The last four characters of an account number."""
    return number[-4:]


def _collect_numbers(payload: Any, found: set[str]) -> None:
    """Add every `accountNumber` value anywhere in `payload` to `found` (one linear pass).

    Iterative with exact-type checks: decoded JSON only holds `dict`, `list` and scalars, and a
    payload of thousands of rows would spend most of its time in recursion and ABC
    `isinstance` checks otherwise. Other mappings and sequences (callers' own data) still work.
    """
    stack: list[Any] = [payload]
    pop, push = stack.pop, stack.append
    while stack:
        value = pop()
        kind = type(value)
        if kind is dict or (kind is not list and isinstance(value, Mapping)):
            number = value.get("accountNumber")
            if isinstance(number, str | int) and str(number):
                found.add(str(number))
            for item in value.values():
                if type(item) not in _SCALARS:
                    push(item)
        elif kind is list:
            for item in value:
                if type(item) not in _SCALARS:
                    push(item)


class _Scrubber:
    """One payload's masking rules, applied in a single copying walk.

    Each object is copied whole in C (`dict.copy`) and only the members that change are
    replaced: strings that contain a known number or sit under a free-text member, nested
    objects and arrays (copied in turn), and the `accountNumber` member. A string is tested
    with one substring check when the payload has one known number (the usual case) or one
    regex search otherwise. The walk dispatches on exact types first because the decoded
    payloads are plain `dict`/`list`/`str` trees.
    """

    __slots__ = ("account_hash", "free_text", "hashes", "numbers", "pattern", "seen", "single")

    def __init__(
        self, numbers: list[str], hashes: Mapping[str, str], account_hash: str | None
    ) -> None:
        self.numbers = numbers
        self.hashes = hashes
        self.account_hash = account_hash
        #: Every `accountNumber` value the walk met (to check the numbers it masked with).
        self.seen: set[str] = set()
        #: Free text already masked: descriptions repeat a lot (every leg names its instrument).
        self.free_text: dict[str, str] = {}
        # How a string is checked for a known number: one `in` test, or one regex search.
        self.single = numbers[0] if len(numbers) == 1 else None
        self.pattern = (
            re.compile("|".join(re.escape(n) for n in numbers)) if len(numbers) > 1 else None
        )

    def text(self, text: str, free_text: bool) -> str:
        """`text` with known numbers (and, in free text, long digit runs) masked."""
        if free_text:
            masked = self.free_text.get(text)
            if masked is None:
                masked = self.free_text[text] = free_text_masked(self._numbers(text))
            return masked
        return self._numbers(text)

    def _numbers(self, text: str) -> str:
        for number in self.numbers:
            if number in text:
                text = text.replace(number, MASK + last4(number))
        return text

    def _hit(self, text: str) -> bool:
        single = self.single
        if single is not None:
            return single in text
        pattern = self.pattern
        return pattern is not None and pattern.search(text) is not None

    def mapping(self, value: Mapping[str, Any]) -> dict[str, Any]:
        """A scrubbed copy of one object."""
        out: dict[str, Any] = value.copy() if type(value) is dict else dict(value)
        single, pattern = self.single, self.pattern
        for key, item in value.items():
            kind = type(item)
            if kind is str:
                free = key in _FREE_TEXT_KEYS
                if (
                    free
                    or (single is not None and single in item)
                    or (pattern is not None and pattern.search(item) is not None)
                ):
                    out[key] = self.text(item, free)
            elif kind is dict:
                out[key] = self.mapping(item)
            elif kind is list:
                out[key] = self.sequence(item, key)
            elif not (kind is int or kind is Decimal or item is None or kind is bool):
                out[key] = self.any(item, key)
        number = value.get("accountNumber")
        if isinstance(number, str | int):
            if str(number):
                self.seen.add(str(number))
            # Replaced by its last four (and the account's hash); the members move to the end
            # of the object, whose member order carries no meaning.
            del out["accountNumber"]
            out["accountNumberLast4"] = last4(str(number))
            resolved = self.account_hash or self.hashes.get(str(number))
            if resolved is not None:
                out.setdefault("accountHash", resolved)
        return out

    def sequence(self, value: list[Any], key: str | None) -> list[Any]:
        """A scrubbed copy of one array (its items inherit the array's member name)."""
        out = value.copy()
        free = key in _FREE_TEXT_KEYS
        for index, item in enumerate(value):
            kind = type(item)
            if kind is dict:
                out[index] = self.mapping(item)
            elif kind is str:
                if free or self._hit(item):
                    out[index] = self.text(item, free)
            elif not (kind is int or kind is Decimal or item is None or kind is bool):
                out[index] = self.any(item, key)
        return out

    def any(self, value: Any, key: str | None) -> Any:
        """The general case: subclasses and other mappings behave like their plain forms."""
        if isinstance(value, Mapping):
            return self.mapping(value)
        if isinstance(value, list):
            return self.sequence(value, key)
        if isinstance(value, str):
            return self.text(value, key in _FREE_TEXT_KEYS)
        return value


def _mask_match(match: re.Match[str]) -> str:
    return MASK + last4(match.group(0))


def free_text_masked(text: str) -> str:
    """`text` with every long digit run (a likely account number) masked to its last four."""
    return _DIGIT_RUN.sub(_mask_match, text)


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
    known: set[str] = set(known_numbers) | set((hashes or {}).keys())
    # Every number must be known before the walk (a string early on may hold a number whose
    # member comes later). A first guess, the rows' own top-level numbers, is almost always
    # all of them; the walk reports every number it met, and only if one was missing from
    # the guess is the payload walked again with all of them (a full pass saved otherwise).
    guess = known | _top_level_numbers(payload)
    scrubber = _Scrubber(masking_order(guess), hashes or {}, account_hash)
    scrubbed = scrubber.any(payload, None)
    if scrubber.seen <= guess:
        return scrubbed
    found = known | scrubber.seen
    _collect_numbers(payload, found)
    return _Scrubber(masking_order(found), hashes or {}, account_hash).any(payload, None)


def masking_order(numbers: set[str]) -> list[str]:
    """The numbers to mask, in the order to mask them."""
    # Longest first so a number that contains another is masked whole; short ones are not
    # account numbers (and would mask too much).
    return sorted((n for n in numbers if len(n) >= 5), key=len, reverse=True)


def _top_level_numbers(payload: Any) -> set[str]:
    """The `accountNumber` values of a payload's top-level object(s), read without a walk."""
    rows = payload if type(payload) is list else [payload]
    found: set[str] = set()
    for row in rows:
        if type(row) is dict or isinstance(row, Mapping):
            number = row.get("accountNumber")
            if isinstance(number, str | int) and str(number):
                found.add(str(number))
    return found
