"""Opaque, tamper-evident keyset cursors.

A cursor is `base64url(JSON [kind, values…]) "." base64url(HMAC-SHA256(key, payload)[:16])`.
Clients must treat it as opaque; the signature makes a hand-edited cursor fail with 422
`invalid_cursor` instead of silently skipping or repeating rows, and the `kind` stops a cursor
of one list from being replayed against another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from dashtam.services.financial.errors import InvalidCursor

#: Longer input is rejected before any decoding work.
MAX_CURSOR_LENGTH = 512
_SIGNATURE_BYTES = 16


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Signs and verifies cursors with a key derived from the server secret."""

    def __init__(self, secret: bytes) -> None:
        """Derive the cursor key from `secret` (never the secret itself)."""
        self._key = hmac.new(secret, b"dashtam.cursor.v1", hashlib.sha256).digest()

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    def encode(self, kind: str, *values: Any) -> str:
        """A cursor for `kind` carrying JSON-serialisable `values`."""
        payload = json.dumps([kind, *values], separators=(",", ":")).encode()
        return f"{_b64encode(payload)}.{_b64encode(self._sign(payload))}"

    def decode(self, kind: str, cursor: str, arity: int) -> list[Any]:
        """The values of a cursor of `kind` with exactly `arity` values.

        Raises:
            InvalidCursor: Malformed, too long, badly signed, of another kind or arity.
        """
        if not cursor or len(cursor) > MAX_CURSOR_LENGTH or cursor.count(".") != 1:
            raise InvalidCursor("The cursor is malformed; use a `next_cursor` value as given.")
        body, signature = cursor.split(".")
        try:
            payload = _b64decode(body)
            given = _b64decode(signature)
        except (binascii.Error, ValueError) as exc:
            raise InvalidCursor("The cursor is malformed.") from exc
        if not hmac.compare_digest(given, self._sign(payload)):
            raise InvalidCursor("The cursor was altered or was not issued by this server.")
        try:
            decoded = json.loads(payload)
        except ValueError as exc:  # pragma: no cover - only reachable with a valid signature
            raise InvalidCursor("The cursor is malformed.") from exc
        if not isinstance(decoded, list) or len(decoded) != arity + 1 or decoded[0] != kind:
            raise InvalidCursor("The cursor belongs to another list.")
        return decoded[1:]
