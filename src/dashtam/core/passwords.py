"""Password policy and hashing: argon2id by default, legacy bcrypt hashes verified and upgraded.

The policy follows NIST SP 800-63B: length is what matters (12–128 code points), there are no
composition rules, and known-common or self-describing passwords are refused. Hashing is slow on
purpose (~100 ms), so every hash and verification runs in a bounded worker pool, never on the
loop.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import threading
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib import resources
from typing import Any, TypeVar

from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from dashtam.core.errors import UnprocessableEntity

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 128
#: Shorter local parts ("jo@…") would reject far too many unrelated passwords.
_MIN_LOCAL_PART = 3
_PRODUCT_NAME = "dashtam"
_COMMON_PASSWORDS_FILE = "common-passwords.txt.gz"
#: bcrypt only ever looked at the first 72 bytes of a password.
_BCRYPT_MAX_BYTES = 72
_T = TypeVar("_T")


class WeakPassword(UnprocessableEntity):
    """422: the password does not meet the policy; `detail` says why."""

    code = "weak_password"
    title = "Weak password"


def normalize_password(password: str) -> str:
    """Return the NFC form, so the same password typed on different keyboards is equal."""
    return unicodedata.normalize("NFC", password)


@cache
def common_passwords() -> frozenset[str]:
    """The bundled common-password list, lower-cased (read once, on first use)."""
    data = resources.files("dashtam").joinpath("data", _COMMON_PASSWORDS_FILE).read_bytes()
    lines = gzip.decompress(data).decode("utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip())


def check_password_policy(password: str, *, email: str | None = None) -> None:
    """Refuse passwords that are too short, too long, common or derived from the account.

    Args:
        password: The candidate password, exactly as typed (never truncated or stripped).
        email: The account's email; a password containing its local part is refused.

    Raises:
        WeakPassword: With a reason a person can act on.
    """
    normalized = normalize_password(password)
    length = len(normalized)
    if length < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"Password must be at least {MIN_PASSWORD_LENGTH} characters long.")
    if length > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"Password must be at most {MAX_PASSWORD_LENGTH} characters long.")
    lowered = normalized.casefold()
    if lowered in common_passwords() or normalized.lower() in common_passwords():
        raise WeakPassword("This password is too common; choose a less predictable one.")
    if _PRODUCT_NAME in lowered:
        raise WeakPassword("Password must not contain the word 'dashtam'.")
    if email:
        local_part = normalize_password(email.rsplit("@", 1)[0]).casefold()
        if len(local_part) >= _MIN_LOCAL_PART and local_part in lowered:
            raise WeakPassword("Password must not contain your email address.")


class _LegacyBcryptHasher(BcryptHasher):
    """Verifies bcrypt hashes made by systems that silently used only the first 72 bytes.

    bcrypt ≥ 5 raises on longer input instead of truncating; truncating here reproduces exactly
    the credential the legacy hash was made from. New hashes are never bcrypt (argon2id is first).
    """

    def verify(self, password: str | bytes, hash: str | bytes) -> bool:
        raw = password.encode("utf-8") if isinstance(password, str) else password
        return super().verify(raw[:_BCRYPT_MAX_BYTES], hash)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


#: Every hash and verification of the process runs here, at most one per usable core.
#: argon2id is memory-hard (64 MiB and 4 lanes each with pwdlib's parameters): running more of
#: them at once than there are cores only adds memory traffic and cache misses, so each takes
#: longer and fewer finish per second (measured: 4 concurrent logins on 2 cores gave 0.85 of
#: the machine's hash rate, 2 at a time gave more). The bound also caps the memory a burst of
#: logins can take at cores × 64 MiB.
_HASHING_POOL = ThreadPoolExecutor(max_workers=_usable_cores(), thread_name_prefix="password")


async def _off_loop(fn: Callable[..., _T], *args: Any) -> _T:
    return await asyncio.get_running_loop().run_in_executor(_HASHING_POOL, fn, *args)


class PasswordHasher:
    """Hash and verify passwords off the event loop; argon2id for new hashes."""

    def __init__(self) -> None:
        """Use argon2id (pwdlib defaults) for new hashes and accept bcrypt for old ones."""
        self._hash = PasswordHash((Argon2Hasher(), _LegacyBcryptHasher()))
        self._dummy_hash: str | None = None
        self._dummy_lock = threading.Lock()

    def __repr__(self) -> str:
        return "PasswordHasher(argon2id, legacy=bcrypt)"

    async def hash(self, password: str) -> str:
        """Return a new argon2id hash of the (NFC-normalised) password."""
        return await _off_loop(self._hash.hash, normalize_password(password))

    async def verify(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        """Check a password against a stored hash.

        Args:
            password: The password as typed.
            password_hash: The stored hash (argon2id, or bcrypt from an older system).

        Returns:
            `(valid, new_hash)`: `new_hash` is set when the password was right but the stored
            hash should be replaced (bcrypt → argon2id, or weaker argon2 parameters).
        """
        return await _off_loop(self._verify_sync, normalize_password(password), password_hash)

    async def verify_dummy(self, password: str) -> None:
        """Spend the same time as a real verification (for unknown emails: no timing oracle)."""
        await _off_loop(self._verify_dummy_sync, normalize_password(password))

    def _verify_sync(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        try:
            return self._hash.verify_and_update(password, password_hash)
        except UnknownHashError:
            # A corrupt or foreign hash can never match; treat it as a wrong password.
            return False, None

    def _verify_dummy_sync(self, password: str) -> None:
        with self._dummy_lock:
            if self._dummy_hash is None:
                # Made once with the live parameters so its cost tracks any future tuning.
                self._dummy_hash = self._hash.hash("dashtam-dummy-password-for-timing")
            dummy = self._dummy_hash
        self._hash.verify(password, dummy)
