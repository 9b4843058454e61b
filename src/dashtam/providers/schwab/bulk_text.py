"""The transaction list read straight from its JSON text: scrubbed as text, decoded once.

A whale's history is over a hundred thousand transactions; decoding, copying every object to
scrub it, and encoding each one again for the `raw` column was a third of a sync's CPU. For the
ordinary reply (no escape sequences anywhere) the same scrubbing can be done on the text,
exactly, with a few C-speed passes: with no backslash in the text a JSON string cannot contain a
quote, so every `"` opens or closes a string and a string's characters are its value. The
reply is then decoded element by element, and each element keeps the slice of text it came
from (`RawPayload.source`), which the store writes as the raw payload without encoding again.

Anything unusual (an escape, an `accountNumber` that is not a plain string or integer, a
free-text member that is not a string, an object that already names its hash or last four
digits, a known number used as a member name, a reply that is not an array of objects) returns
None, and the caller takes the general path in `parsing`, which handles every shape. The
result is the same as that path's, member order aside.
"""

from __future__ import annotations

import json
import json.scanner
import re
from decimal import Decimal
from typing import Any

from dashtam.providers.base import Payload, RawPayload
from dashtam.providers.schwab.parsing import (
    MASK,
    free_text_masked,
    last4,
    masking_order,
    reject_constant,
)

#: An `accountNumber` member whose value is a plain string or an integer literal.
_ACCOUNT_MEMBER = re.compile(r'"accountNumber"\s*:\s*(?:"([^"]*)"|(-?\d+)(?=\s*[,}\]]))')
#: A free-text member whose value is not a string (an array or object): the general path.
_FREE_TEXT_CONTAINER = re.compile(r'"description"\s*:\s*[\[{]')
#: A free-text string holding a run of at least 8 digits (possessive: linear, no backtracking).
_FREE_TEXT_DIGITS = re.compile(r'"description"\s*:\s*"[^"\d]*+(?:\d{1,7}+[^"\d]++)*+\d{8}')
_WHITESPACE = re.compile(r"[ \t\n\r]*")
#: Markers the text path leaves to the general one (it would have to merge members).
_GENERAL_ONLY = (b"\\", b'"accountHash"', b'"accountNumberLast4"')

_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=reject_constant)
#: Decodes one value at an index and says where it ended (the C scanner behind `json.loads`).
_scan_once: Any = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]  # stub is too narrow


class _NotPlain(Exception):
    """The reply needs the general path."""


def read_transactions(content: bytes, account_hash: str | None) -> list[Payload] | None:
    """Decode and scrub a transaction list from its text, or None to take the general path.

    Args:
        content: The response body.
        account_hash: The hash every `accountNumber` in the reply belongs to.

    Returns:
        The scrubbed payloads (each a `RawPayload` carrying its own scrubbed JSON text), or
        None when the reply is not the plain shape this path handles exactly.
    """
    if any(marker in content for marker in _GENERAL_ONLY) or content.startswith(b"\xef\xbb\xbf"):
        return None
    try:
        text = content.decode("utf-8")
        numbers: set[str] = set()
        text = _replace_account_members(text, account_hash, numbers)
        for number in masking_order(numbers):
            text = _mask_in_strings(text, number)
        if _FREE_TEXT_CONTAINER.search(text):
            return None
        text = _mask_free_text(text)
        return _decode_array(text)
    except (_NotPlain, UnicodeDecodeError, ValueError, StopIteration, IndexError):
        return None


def _replace_account_members(text: str, account_hash: str | None, numbers: set[str]) -> str:
    """Each `accountNumber` member becomes `accountNumberLast4` (and the account's hash)."""

    def replace(match: re.Match[str]) -> str:
        value = match.group(1) if match.group(1) is not None else match.group(2)
        if value:
            numbers.add(value)
        members = f'"accountNumberLast4":"{last4(value)}"'
        return members + (f',"accountHash":"{account_hash}"' if account_hash else "")

    replaced, count = _ACCOUNT_MEMBER.subn(replace, text)
    if count != text.count('"accountNumber"'):
        raise _NotPlain  # a member with another kind of value, or the name inside a string
    return replaced


def _mask_in_strings(text: str, number: str) -> str:
    """Mask `number` wherever it occurs inside a string value (numbers in literals stay).

    Quote parity says whether an occurrence is inside a string: the text has no escapes.
    """
    position = text.find(number)
    if position < 0:
        return text
    masked = MASK + last4(number)
    pieces: list[str] = []
    done = 0  # text[:done] is in pieces
    quotes = 0  # quotes in text[:counted]
    counted = 0
    while position >= 0:
        quotes += text.count('"', counted, position)
        counted = position
        if quotes % 2:
            closing = text.index('"', position)
            after = _WHITESPACE.match(text, closing + 1)
            if after is not None and text.startswith(":", after.end()):
                raise _NotPlain  # a member name: the general path leaves names alone
            pieces.append(text[done:position])
            pieces.append(masked)
            done = position + len(number)
        position = text.find(number, position + len(number))
    pieces.append(text[done:])
    return "".join(pieces)


def _mask_free_text(text: str) -> str:
    """Mask long digit runs in free-text strings (only those holding one are rewritten)."""
    pieces: list[str] = []
    done = 0
    for match in _FREE_TEXT_DIGITS.finditer(text):
        opening = text.index('"', match.start() + len('"description"')) + 1
        if opening < done:
            continue
        closing = text.index('"', opening)
        pieces.append(text[done:opening])
        pieces.append(free_text_masked(text[opening:closing]))
        done = closing
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def _decode_array(text: str) -> list[Payload]:
    """Decode a top-level array of objects, each keeping the text it was decoded from."""
    skip = _WHITESPACE.match
    index = _end(skip(text, 0))
    if text[index] != "[":
        raise _NotPlain
    index = _end(skip(text, index + 1))
    payloads: list[Payload] = []
    if text[index] == "]":
        return _rest_is_blank(text, index + 1, payloads)
    append = payloads.append
    while True:
        value, end = _scan_once(text, index)
        if type(value) is not dict:
            raise _NotPlain
        payload = RawPayload(value)
        payload.source = text[index:end]
        append(payload)
        index = _end(skip(text, end))
        separator = text[index]
        if separator == "]":
            return _rest_is_blank(text, index + 1, payloads)
        if separator != ",":
            raise _NotPlain
        index = _end(skip(text, index + 1))


def _end(match: re.Match[str] | None) -> int:
    assert match is not None  # the whitespace pattern matches the empty string anywhere
    return match.end()


def _rest_is_blank(text: str, index: int, payloads: list[Payload]) -> list[Payload]:
    if text[index:].strip(" \t\n\r"):
        raise _NotPlain
    return payloads
