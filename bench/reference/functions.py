"""Reference functions: factories returning a zero-argument callable to measure per call.

A factory runs once in each worker process; whatever it prepares (a hash to verify, a key) is
not measured.
"""

from __future__ import annotations

from collections.abc import Callable

#: The password the argon2 references verify (its length does not matter to argon2's cost).
BENCH_PASSWORD = "correct horse battery staple 42"


def argon2_verify() -> Callable[[], bool]:
    """One argon2id verification of a correct password with pwdlib's recommended settings.

    This is the floor for a password login: the hash Dashtam stores is made the same way.
    """
    from pwdlib import PasswordHash

    hasher = PasswordHash.recommended()
    stored = hasher.hash(BENCH_PASSWORD)
    if not hasher.verify(BENCH_PASSWORD, stored):
        raise RuntimeError("argon2 reference does not verify its own hash")

    def verify() -> bool:
        return hasher.verify(BENCH_PASSWORD, stored)

    return verify
