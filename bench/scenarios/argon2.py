"""`argon2_verify_rate`: the raw argon2id verification rate on this machine (no target).

It checks the function-measuring plumbing and gives the floor any password login is compared
with: `auth_login` cannot beat this many verifications per second.
"""

from __future__ import annotations

from bench.scenarios.base import FunctionRef, Scenario

SCENARIOS = (
    Scenario(
        name="argon2_verify_rate",
        description="argon2id verifications/s with pwdlib's recommended settings, one process "
        "per core",
        subject=FunctionRef(factory="bench.reference.functions:argon2_verify"),
        notes="report only; p50/p99 are per-verification times with every core busy",
    ),
)
