"""Failed-login counting and lockout per account identifier (the normalised email).

The counter lives in the KV store (`incr` with a TTL = the counting window), keyed by a keyed
hash of the email so no address is written to Redis, and it counts unknown emails exactly like
known ones: the answer never tells whether an account exists. Reaching the threshold turns the
counter into a lock by re-setting its TTL to the lockout duration.

Fallback when the KV store is unreachable: failures of *existing* accounts are counted in the
`users` row (`failed_login_count`, `locked_until`), and `locked_until` is honoured at every
login, so a lock set during an outage outlives it. Unknown emails are not counted during the
outage (there is no row to count in); the per-IP rate limit still applies to them.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from dashtam.core.kv import KeyValueUnavailable
from dashtam.services.auth.toolkit import PURPOSE_LOGIN_IDENTIFIER, AuthToolkit


@dataclass(frozen=True)
class LockoutCheck:
    """The state of one identifier before an attempt."""

    locked: bool
    retry_after: int
    had_failures: bool
    kv_available: bool


@dataclass(frozen=True)
class FailureOutcome:
    """What counting one failure did."""

    just_locked: bool
    kv_available: bool


class LoginLockout:
    """Count failed logins per identifier and tell when it is locked."""

    def __init__(self, tk: AuthToolkit) -> None:
        """Read thresholds from the settings."""
        self._tk = tk
        settings = tk.settings
        self.threshold = settings.login_lockout_threshold
        self.window = timedelta(minutes=settings.login_lockout_window_minutes)
        self.duration = timedelta(minutes=settings.login_lockout_minutes)

    def key(self, email: str) -> str:
        """The KV key for a normalised email."""
        digest = self._tk.keyed.digest(email, purpose=PURPOSE_LOGIN_IDENTIFIER)
        return f"auth:login-failures:{digest}"

    def lock_deadline(self, now: datetime) -> datetime:
        """When a lock taken now ends (database fallback)."""
        return now + self.duration

    async def check(self, email: str) -> LockoutCheck:
        """Is this identifier locked right now? (one KV read when it is not)."""
        kv = self._tk.kv
        key = self.key(email)
        try:
            value = await kv.get(key)
            failures = int(value) if value is not None else 0
            if failures < self.threshold:
                return LockoutCheck(False, 0, failures > 0, True)
            remaining = await kv.ttl(key)
        except KeyValueUnavailable:
            return LockoutCheck(False, 0, False, False)
        retry_after = math.ceil(remaining) if remaining else int(self.duration.total_seconds())
        return LockoutCheck(True, max(1, retry_after), True, True)

    async def register_failure(self, email: str) -> FailureOutcome:
        """Count one failure; lock the identifier when the threshold is reached."""
        kv = self._tk.kv
        key = self.key(email)
        try:
            failures = await kv.incr(key, 1, ttl=self.window.total_seconds())
            if failures >= self.threshold:
                await kv.set(key, str(failures), ttl=self.duration.total_seconds())
                return FailureOutcome(True, True)
        except KeyValueUnavailable:
            return FailureOutcome(False, False)
        return FailureOutcome(False, True)

    async def clear(self, email: str) -> None:
        """Forget failures (successful login, completed password reset)."""
        # When the store is down there is nothing to clear now: the counter expires by itself.
        with contextlib.suppress(KeyValueUnavailable):
            await self._tk.kv.delete(self.key(email))
