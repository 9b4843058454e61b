"""Mutable state of one simulator process: clock, OAuth codes and tokens, faults, stats, limits.

All of it lives in process memory (the simulator is one process) and is only touched from the
event loop, so no locks are needed. `SimulatorState.reset()` returns everything to the start.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from dashtam.simulator.data import Dataset, create_dataset

RefreshMode = Literal["same", "rotate", "omit"]
FaultKind = Literal["status", "latency", "malformed", "drop"]
TokenAction = Literal["expire-access", "revoke-refresh", "expire-refresh"]

CODE_TTL = timedelta(seconds=30)
#: Expired codes are forgotten this long after they expire.
CODE_RETENTION = timedelta(minutes=5)
ACCESS_TTL = timedelta(minutes=30)
REFRESH_TTL = timedelta(days=7)
RATE_WINDOW_SECONDS = 60.0
#: base64("oauth2.bdc.schwab.com"): the host part real codes and access tokens carry.
TOKEN_HOST = base64.b64encode(b"oauth2.bdc.schwab.com").decode()


class SimClock:
    """The simulator's clock: the start time plus explicit advances (plus real time if running)."""

    def __init__(self, start: datetime, *, running: bool = False) -> None:
        """Start at `start` (aware); `running` also lets real time pass."""
        self.start = start.astimezone(UTC).replace(microsecond=0)
        self.running = running
        self._offset = 0.0
        self._origin = time.monotonic()

    @property
    def offset_seconds(self) -> float:
        """Seconds between the start and now."""
        real = time.monotonic() - self._origin if self.running else 0.0
        return self._offset + real

    @property
    def advanced_seconds(self) -> float:
        """Seconds added through `advance` (excludes real time passing)."""
        return self._offset

    def now(self) -> datetime:
        """The current simulated time (aware UTC)."""
        return self.start + timedelta(seconds=self.offset_seconds)

    def now_epoch(self) -> int:
        """The current simulated time as whole epoch seconds."""
        return int(self.now().timestamp())

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward and return the new time."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds
        return self.now()

    def reset(self) -> None:
        """Back to the start time."""
        self._offset = 0.0
        self._origin = time.monotonic()


def _random_tail() -> str:
    # 43 url-safe characters, like the observed real tokens.
    return secrets.token_urlsafe(32)[:43]


def new_code() -> str:
    """An authorization code: `C0.<base64 host>.<random>@`."""
    return f"C0.{TOKEN_HOST}.{_random_tail()}@"


def new_access_token() -> str:
    """An access token: `I0.<base64 host>.<random>@`."""
    return f"I0.{TOKEN_HOST}.{_random_tail()}@"


def new_refresh_token() -> str:
    """An opaque refresh token (format differs from the access token, as in reality)."""
    return f"{_random_tail()}@"


def token_digest(token: str) -> str:
    """The digest Schwab shows in refresh errors: never the token itself."""
    return base64.b64encode(hashlib.sha256(token.encode()).digest()).decode()


@dataclass
class AuthCode:
    """An issued authorization code."""

    username: str
    client_id: str
    redirect_uri: str
    expires_at: datetime
    used: bool = False


@dataclass
class AccessGrant:
    """An issued access token."""

    username: str
    client_id: str
    expires_at: datetime


@dataclass
class RefreshGrant:
    """An issued refresh token; `login_at` is the code exchange that started its family."""

    username: str
    client_id: str
    login_at: datetime
    expires_at: datetime
    alive: bool = True


class CodeError(Exception):
    """The code cannot be exchanged (unknown, used, expired, other client or redirect)."""


class RefreshError(Exception):
    """The refresh token is unknown, superseded, revoked or past its 7-day wall."""


class TokenStore:
    """Authorization codes, access tokens and refresh tokens with Schwab's lifetimes."""

    def __init__(self) -> None:
        """An empty store."""
        self.codes: dict[str, AuthCode] = {}
        self.access: dict[str, AccessGrant] = {}
        self.refresh: dict[str, RefreshGrant] = {}
        #: Refresh tokens issued per (username, client id) since its last login, so a login
        #: kills its predecessors without scanning every grant ever issued.
        self._families: dict[tuple[str, str], list[str]] = {}

    def issue_code(self, username: str, client_id: str, redirect_uri: str, now: datetime) -> str:
        """A fresh single-use code valid for 30 seconds."""
        self._prune(now)
        code = new_code()
        self.codes[code] = AuthCode(username, client_id, redirect_uri, now + CODE_TTL)
        return code

    def redeem_code(
        self, code: str, client_id: str, redirect_uri: str | None, now: datetime
    ) -> AuthCode:
        """Consume a code.

        Raises:
            CodeError: Unknown, already used, expired, another client's, or the redirect URI
                differs from the one used at authorization.
        """
        record = self.codes.get(code)
        if record is None or record.client_id != client_id:
            raise CodeError("Authorization code is invalid")
        if record.used:
            raise CodeError("Authorization code has already been used")
        if now >= record.expires_at:
            raise CodeError("Authorization code has expired")
        if redirect_uri != record.redirect_uri:
            raise CodeError("redirect_uri does not match the authorization request")
        record.used = True
        return record

    def login(self, username: str, client_id: str, now: datetime) -> tuple[str, str]:
        """Tokens for a completed code exchange; older refresh tokens of the user+app die."""
        for token in self._families.pop((username, client_id), ()):
            self.refresh[token].alive = False
        access = self._issue_access(username, client_id, now)
        refresh = new_refresh_token()
        self.refresh[refresh] = RefreshGrant(username, client_id, now, now + REFRESH_TTL)
        self._families[(username, client_id)] = [refresh]
        return access, refresh

    def use_refresh(
        self, token: str, client_id: str, now: datetime, mode: RefreshMode
    ) -> tuple[str, str | None]:
        """A new access token for a refresh token; the refresh token per `mode`.

        Returns:
            (access token, refresh token to return or None to omit the field).

        Raises:
            RefreshError: The refresh token cannot be used.
        """
        grant = self.refresh.get(token)
        if grant is None or not grant.alive or grant.client_id != client_id:
            raise RefreshError(token)
        if now >= grant.expires_at:
            raise RefreshError(token)
        access = self._issue_access(grant.username, client_id, now)
        if mode == "omit":
            return access, None
        if mode == "same":
            return access, token
        # Rotation keeps the family's absolute expiry: a new value never buys more time.
        grant.alive = False
        rotated = new_refresh_token()
        self.refresh[rotated] = RefreshGrant(
            grant.username, client_id, grant.login_at, grant.expires_at
        )
        self._families.setdefault((grant.username, client_id), []).append(rotated)
        return access, rotated

    def authenticate(self, token: str, now: datetime) -> AccessGrant | None:
        """The grant behind a bearer token, if it exists and has not expired."""
        grant = self.access.get(token)
        if grant is None or now >= grant.expires_at:
            return None
        return grant

    def apply(self, username: str, action: TokenAction, now: datetime) -> int:
        """Expire or revoke a user's tokens (control API); returns how many were affected."""
        affected = 0
        if action == "expire-access":
            for grant in self.access.values():
                if grant.username == username and grant.expires_at > now:
                    grant.expires_at = now
                    affected += 1
            return affected
        for refresh in self.refresh.values():
            if refresh.username != username or not refresh.alive:
                continue
            if action == "revoke-refresh":
                refresh.alive = False
                affected += 1
            elif refresh.expires_at > now:
                refresh.expires_at = now
                affected += 1
        return affected

    def _issue_access(self, username: str, client_id: str, now: datetime) -> str:
        token = new_access_token()
        self.access[token] = AccessGrant(username, client_id, now + ACCESS_TTL)
        return token

    def _prune(self, now: datetime) -> None:
        # Keep memory bounded in long dev sessions. Codes are kept in issue order, which is
        # expiry order (one TTL, a clock that only moves forward), so the dead ones are at
        # the front: drop them until a younger one, in O(dropped) rather than a full scan.
        # Expired codes are kept a while so that a late exchange still hears "expired".
        horizon = now - CODE_RETENTION
        codes = self.codes
        while codes:
            oldest = next(iter(codes))
            if codes[oldest].expires_at > horizon:
                break
            del codes[oldest]


@dataclass
class Fault:
    """A fault applied to the next `remaining` requests whose path starts with `path_prefix`."""

    kind: FaultKind
    remaining: int
    path_prefix: str | None = None
    status: int = 500
    retry_after: int | None = None
    latency_ms: int = 0
    body: Literal["json", "empty", "html"] = "json"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


class FaultBoard:
    """Injected faults, consumed in the order they were added."""

    def __init__(self) -> None:
        """No faults."""
        self.faults: list[Fault] = []
        self.injected = 0

    def add(self, fault: Fault) -> Fault:
        """Queue a fault."""
        self.faults.append(fault)
        return fault

    def take(self, path: str) -> Fault | None:
        """The first live fault matching `path`, with one use consumed."""
        for fault in self.faults:
            if fault.remaining > 0 and (
                fault.path_prefix is None or path.startswith(fault.path_prefix)
            ):
                fault.remaining -= 1
                self.injected += 1
                if fault.remaining == 0:
                    self.faults.remove(fault)
                return fault
        return None

    def clear(self) -> int:
        """Drop every fault; returns how many were pending."""
        count = len(self.faults)
        self.faults.clear()
        return count


class RateLimiter:
    """A rolling one-minute window per token owner (user + app).

    Windows run on real monotonic time plus the clock's advances, so both waiting and
    `POST /control/clock` open the window again.
    """

    def __init__(self, limit: int, clock: SimClock) -> None:
        """Allow `limit` calls per rolling minute."""
        self.limit = limit
        self.clock = clock
        self._calls: dict[str, deque[float]] = {}

    def _now(self) -> float:
        return time.monotonic() + self.clock.advanced_seconds

    def hit(self, key: str) -> float | None:
        """Record a call; None if allowed, else the seconds until one is allowed again."""
        now = self._now()
        window = self._calls.setdefault(key, deque())
        while window and window[0] <= now - RATE_WINDOW_SECONDS:
            window.popleft()
        if len(window) >= self.limit:
            return max(window[0] + RATE_WINDOW_SECONDS - now, 0.0)
        window.append(now)
        return None

    def reset(self) -> None:
        """Forget every window."""
        self._calls.clear()


class Stats:
    """Request counts per endpoint, token calls per grant type, and other tallies."""

    def __init__(self) -> None:
        """All zero."""
        self.requests: Counter[str] = Counter()
        self.token_grants: Counter[str] = Counter()
        self.rate_limited = 0

    def reset(self) -> None:
        """Back to zero."""
        self.requests.clear()
        self.token_grants.clear()
        self.rate_limited = 0


@dataclass
class Options:
    """Switches between the response shapes the reference marks uncertain."""

    refresh_mode: RefreshMode
    transaction_detail_shape: Literal["array", "object"]
    cancelled_transactions: Literal["hide", "invalid"]


class SimulatorState:
    """Everything one simulator process knows: registration, data, clock, tokens, faults."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        redirect_uris: list[str],
        start: datetime,
        clock_running: bool,
        seed: int,
        whale_years: int,
        rate_limit: int,
        options: Options,
        control_token: str | None,
    ) -> None:
        """Create the state; `reset()` later returns to exactly this."""
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = tuple(redirect_uris)
        self.control_token = control_token
        self.clock = SimClock(start, running=clock_running)
        self.dataset: Dataset = create_dataset(
            seed=seed, start=self.clock.start, whale_years=whale_years
        )
        self._initial_options = Options(**vars(options))
        self.options = options
        self.tokens = TokenStore()
        self.faults = FaultBoard()
        self.stats = Stats()
        self.limiter = RateLimiter(rate_limit, self.clock)
        # Per-process key for the id_token JWTs (nobody verifies them; they only look real).
        self.id_token_key = secrets.token_bytes(32)

    def reset(self) -> None:
        """Back to the initial state: clock, tokens, faults, stats, limits and options."""
        self.clock.reset()
        self.tokens = TokenStore()
        self.faults = FaultBoard()
        self.stats.reset()
        self.limiter.reset()
        self.options = Options(**vars(self._initial_options))
