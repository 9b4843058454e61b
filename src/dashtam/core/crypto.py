"""The token vault: institution tokens encrypted at rest with AES-256-GCM.

Ciphertexts are self-describing — `v1.<key id>.<base64url(nonce | ciphertext | tag)>` — so keys
can rotate: several keys decrypt, the last one configured encrypts, and `needs_rotation` tells
which stored values still use an older key. Each ciphertext is bound through the associated data
to the (table, column, row id) it was written for, so a value copied to another row, column or
table fails to decrypt instead of silently handing one user's token to another.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dashtam.core.config import ConfigurationError

_VERSION = "v1"
_NONCE_BYTES = 12  # 96 bits: the size GCM is designed for (no extra GHASH of the nonce)
_TAG_BYTES = 16
_KEY_BYTES = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")
_AAD_LABEL = b"dashtam-vault"


class DecryptionError(Exception):
    """The ciphertext is malformed, tampered with, bound elsewhere, or under an unknown key."""


@dataclass(frozen=True, repr=False)
class _Key:
    key_id: str
    cipher: AESGCM


def _b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding; raise ValueError on anything else."""
    if not _BASE64URL.fullmatch(text):
        raise ValueError("not base64url")
    stripped = text.rstrip("=")
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _associated_data(key_id: str, table: str, column: str, row_id: str) -> bytes:
    # Length-prefixed fields: ("a", "bc") and ("ab", "c") must not produce the same bytes.
    parts = (_AAD_LABEL, _VERSION.encode(), key_id.encode(), table, column, row_id)
    encoded = bytearray()
    for part in parts:
        raw = part if isinstance(part, bytes) else part.encode("utf-8")
        encoded += struct.pack(">I", len(raw)) + raw
    return bytes(encoded)


class TokenVault:
    """Encrypt and decrypt secrets bound to a (table, column, row id)."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        """Build from `(key id, 32-byte key)` pairs; the last pair is the active key.

        Raises:
            ConfigurationError: No keys, a bad or duplicate id, or a key of the wrong length.
        """
        if not keys:
            raise ConfigurationError("ENCRYPTION_KEYS holds no key")
        self._keys: dict[str, _Key] = {}
        for position, (key_id, key) in enumerate(keys, start=1):
            if not _KEY_ID.fullmatch(key_id):
                raise ConfigurationError(
                    f"ENCRYPTION_KEYS entry {position}: the key id must be 1-32 characters "
                    "from A-Z, a-z, 0-9, '_' and '-'"
                )
            if key_id in self._keys:
                raise ConfigurationError(
                    f"ENCRYPTION_KEYS entry {position}: key id {key_id!r} is used twice"
                )
            if len(key) != _KEY_BYTES:
                raise ConfigurationError(
                    f"ENCRYPTION_KEYS entry {position} ({key_id!r}): the key is {len(key)} bytes; "
                    f"AES-256 needs exactly {_KEY_BYTES}"
                )
            self._keys[key_id] = _Key(key_id, AESGCM(key))
        self._active = self._keys[keys[-1][0]]

    @classmethod
    def from_setting(cls, value: str) -> TokenVault:
        """Parse `ENCRYPTION_KEYS`: comma-separated `<id>:<base64url 32 bytes>`, newest last.

        Raises:
            ConfigurationError: With a message naming the entry, never the key material.
        """
        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        keys: list[tuple[str, bytes]] = []
        for position, entry in enumerate(entries, start=1):
            key_id, sep, encoded = entry.partition(":")
            key_id = key_id.strip()
            if not sep or not key_id:
                raise ConfigurationError(
                    f"ENCRYPTION_KEYS entry {position} is not `<id>:<base64url key>`"
                )
            try:
                key = _b64url_decode(encoded.strip())
            except ValueError:
                raise ConfigurationError(
                    f"ENCRYPTION_KEYS entry {position} ({key_id!r}): the key is not base64url"
                ) from None
            keys.append((key_id, key))
        return cls(keys)

    def __repr__(self) -> str:
        return f"TokenVault(active={self.active_key_id!r}, keys={list(self._keys)!r})"

    @property
    def active_key_id(self) -> str:
        """The id of the key new ciphertexts are made with."""
        return self._active.key_id

    @property
    def key_ids(self) -> list[str]:
        """Every key id that can decrypt, oldest first."""
        return list(self._keys)

    def encrypt(self, plaintext: str, *, table: str, column: str, row_id: str) -> str:
        """Encrypt `plaintext` with the active key, bound to one table/column/row.

        Returns:
            `v1.<key id>.<base64url(nonce | ciphertext | tag)>`.
        """
        key = self._active
        # A fresh random 96-bit nonce per message; never reused under one key in practice
        # (collision odds stay negligible far beyond the number of tokens we will store).
        nonce = os.urandom(_NONCE_BYTES)
        aad = _associated_data(key.key_id, table, column, row_id)
        sealed = key.cipher.encrypt(nonce, plaintext.encode("utf-8"), aad)
        return f"{_VERSION}.{key.key_id}.{_b64url_encode(nonce + sealed)}"

    def decrypt(self, ciphertext: str, *, table: str, column: str, row_id: str) -> str:
        """Decrypt a value written for exactly this table/column/row.

        Raises:
            DecryptionError: Malformed, tampered, bound elsewhere, or under an unknown key.
        """
        key_id, payload = self._parse(ciphertext)
        key = self._keys.get(key_id)
        if key is None:
            raise DecryptionError(f"unknown key id {key_id!r}")
        nonce, sealed = payload[:_NONCE_BYTES], payload[_NONCE_BYTES:]
        aad = _associated_data(key_id, table, column, row_id)
        try:
            plaintext = key.cipher.decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise DecryptionError(
                "ciphertext failed authentication (tampered, or written for another row, "
                "column or table)"
            ) from None
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptionError("plaintext is not UTF-8") from None

    def key_id_of(self, ciphertext: str) -> str:
        """The id of the key a ciphertext was made with.

        Raises:
            DecryptionError: The value is not a vault ciphertext.
        """
        return self._parse(ciphertext)[0]

    def needs_rotation(self, ciphertext: str) -> bool:
        """True when the value was encrypted with a key other than the active one."""
        return self.key_id_of(ciphertext) != self._active.key_id

    def reencrypt(self, ciphertext: str, *, table: str, column: str, row_id: str) -> str:
        """Decrypt and encrypt again with the active key (same binding, fresh nonce)."""
        plaintext = self.decrypt(ciphertext, table=table, column=column, row_id=row_id)
        return self.encrypt(plaintext, table=table, column=column, row_id=row_id)

    @staticmethod
    def _parse(ciphertext: str) -> tuple[str, bytes]:
        parts = ciphertext.split(".")
        if len(parts) != 3 or parts[0] != _VERSION:
            raise DecryptionError("not a v1 vault ciphertext")
        key_id, encoded = parts[1], parts[2]
        if not _KEY_ID.fullmatch(key_id):
            raise DecryptionError("malformed key id")
        try:
            payload = _b64url_decode(encoded)
        except ValueError:
            raise DecryptionError("malformed ciphertext encoding") from None
        if len(payload) < _NONCE_BYTES + _TAG_BYTES:
            raise DecryptionError("ciphertext too short")
        return key_id, payload
