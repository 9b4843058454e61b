"""Institution token lifecycle: sealed storage, refresh ahead of expiry, single flight, rotation.

`TokenManager` is what the sync engine (and the "refresh now" endpoint) use:

* `access_token(provider_id)` returns a usable access token, refreshing it when it expires
  within the margin (5 minutes by default);
* `call(provider_id, fn)` runs `fn(access_token)` and, when the institution rejects the token
  (`AccessTokenRejected`), refreshes once and retries once — never more.

Refreshes are single-flight per provider: a KV lock, then a re-read of the row, so twenty
concurrent callers cause one upstream refresh and the other nineteen reuse its result. No
database transaction is held across the upstream call (on SQLite a transaction holds the one
write lock): every step is read → call → write, each database step its own short unit of
work, and every write is a compare-and-swap on the row as it was read, so a slow writer never
overwrites newer tokens and a row is never half written.

A read is one SELECT of the provider joined to its token row (on PostgreSQL outside any
transaction); a refresh writes tokens and audit row in one unit of work and answers from what
it wrote. "Refresh now" reads only under the lock: ownership, status and tokens at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.crypto import DecryptionError, TokenVault
from dashtam.core.database import session_scope
from dashtam.core.kv import KeyValueUnavailable, LockNotAcquired
from dashtam.core.logging import log_event
from dashtam.core.observability import metrics
from dashtam.core.state import AppResources, statement_scope
from dashtam.core.types import utcnow
from dashtam.models.provider import ProviderStatus
from dashtam.providers.base import Provider as ProviderClient
from dashtam.providers.base import TokenSet
from dashtam.providers.errors import (
    AccessTokenRejected,
    ProviderBadResponse,
    ProviderError,
    ReauthRequired,
)
from dashtam.services.connections import repository as repo
from dashtam.services.connections.audit import (
    AuditAction,
    AuditOrigin,
    AuditOutcome,
    audit_values,
    log_recorded,
    record,
)
from dashtam.services.connections.context import providers_of, vault_of
from dashtam.services.connections.errors import NotConnected, ProviderNotFound, TokenRefreshBusy
from dashtam.services.connections.token_statements import (
    read_connection,
    swap_tokens_with_audit_direct,
)

logger = logging.getLogger("dashtam.connections.tokens")

T = TypeVar("T")

TOKENS_TABLE = "provider_tokens"
ACCESS_COLUMN = "access_token_encrypted"
REFRESH_COLUMN = "refresh_token_encrypted"

#: Longest a refresh may hold the lock before another caller may take over (s). Longer than
#: one refresh with all its bounded retries.
LOCK_LEASE_SECONDS = 180.0
#: Longest a caller waits for another caller's refresh (s).
LOCK_WAIT_SECONDS = 150.0

#: "Refresh now" requests this soon after a refresh reuse its result.
MANUAL_REFRESH_COALESCE = timedelta(seconds=10)

#: Process-local locks used only while the shared KV store is unreachable.
_local_locks: dict[str, asyncio.Lock] = {}


@dataclass(frozen=True)
class SealedTokens:
    """Both token columns encrypted with the active key, bound to one row."""

    access_ciphertext: str
    refresh_ciphertext: str | None
    key_id: str


def seal_tokens(
    vault: TokenVault, *, row_id: uuid.UUID, access_token: str, refresh_token: str | None
) -> SealedTokens:
    """Encrypt both tokens with the active key, bound to (table, column, row id).

    Both are always re-encrypted together so `key_id` describes the whole row.
    """
    bound = str(row_id)
    access = vault.encrypt(access_token, table=TOKENS_TABLE, column=ACCESS_COLUMN, row_id=bound)
    refresh = (
        vault.encrypt(refresh_token, table=TOKENS_TABLE, column=REFRESH_COLUMN, row_id=bound)
        if refresh_token is not None
        else None
    )
    return SealedTokens(access, refresh, vault.active_key_id)


def refresh_outcome(old_refresh: str | None, new_refresh: str | None) -> str:
    """How the refresh token changed: `rotated` (stored), `unchanged` or `not_returned` (kept)."""
    if new_refresh is None:
        return "not_returned"
    return "unchanged" if new_refresh == old_refresh else "rotated"


@dataclass(frozen=True, repr=False)
class TokenSnapshot:
    """A provider's tokens as read at one moment, decrypted (never logged: no `repr`)."""

    provider_id: uuid.UUID
    user_id: uuid.UUID
    provider_key: str
    status: str
    row_id: uuid.UUID
    access_token: str
    refresh_token: str | None
    access_ciphertext: str
    access_expires_at: datetime | None
    refresh_expires_at: datetime | None
    scope: str | None
    refresh_count: int
    refreshed_at: datetime | None
    connected_at: datetime | None

    def __repr__(self) -> str:
        return f"TokenSnapshot(provider_id={self.provider_id!s}, status={self.status!r})"

    def is_fresh(self, now: datetime, margin: timedelta) -> bool:
        """Usable for at least `margin` more (unknown lifetimes count as fresh: a 401 tells)."""
        return self.access_expires_at is None or self.access_expires_at - margin > now

    def is_usable(self, now: datetime) -> bool:
        """Not yet expired."""
        return self.access_expires_at is None or self.access_expires_at > now

    def refresh_expired(self, now: datetime) -> bool:
        """The refresh token is past its known absolute lifetime."""
        return self.refresh_expires_at is not None and self.refresh_expires_at <= now


async def store_new_tokens(
    session: AsyncSession,
    vault: TokenVault,
    *,
    provider_id: uuid.UUID,
    tokens: TokenSet,
    refresh_max_age: timedelta | None,
    now: datetime,
) -> uuid.UUID:
    """Write the tokens of a fresh interactive login (replacing any older ones).

    Locks the provider's token row (if any) and writes it; see `write_new_tokens`.

    Returns:
        The token row's id.
    """
    row_id = await repo.token_row_id(session, provider_id=provider_id, for_update=True)
    return await write_new_tokens(
        session,
        vault,
        provider_id=provider_id,
        row_id=row_id,
        tokens=tokens,
        refresh_max_age=refresh_max_age,
        now=now,
    )


async def write_new_tokens(
    session: AsyncSession,
    vault: TokenVault,
    *,
    provider_id: uuid.UUID,
    row_id: uuid.UUID | None,
    tokens: TokenSet,
    refresh_max_age: timedelta | None,
    now: datetime,
) -> uuid.UUID:
    """Write a fresh login's tokens into the row the caller locked (or a new row).

    The row keeps its id across re-authorizations; the refresh token's absolute expiry starts
    at this login (Schwab: seven days, never extended by refreshing). One Core statement, no
    ORM object: the caller's unit of work commits it.

    Args:
        row_id: The provider's token row, read with `for_update=True` in this unit of work;
            None when the provider has none yet (a row is inserted).

    Returns:
        The token row's id.
    """
    target = row_id or uuid.uuid4()
    sealed = seal_tokens(
        vault, row_id=target, access_token=tokens.access_token, refresh_token=tokens.refresh_token
    )
    values: dict[str, Any] = {
        "access_token_encrypted": sealed.access_ciphertext,
        "refresh_token_encrypted": sealed.refresh_ciphertext,
        "key_id": sealed.key_id,
        "token_type": (tokens.token_type or "Bearer")[:32],
        "scope": tokens.scope[:255] if tokens.scope else None,
        "access_expires_at": tokens.access_expires_at,
        "refresh_expires_at": (
            tokens.issued_at + refresh_max_age
            if tokens.refresh_token is not None and refresh_max_age is not None
            else None
        ),
        "issued_at": tokens.issued_at,
        "refreshed_at": None,
        "refresh_count": 0,
        "updated_at": now,
    }
    if row_id is None:
        values |= {"id": target, "provider_id": provider_id, "created_at": now}
        await repo.insert_tokens(session, values=values)
    else:
        await repo.update_tokens(session, row_id=row_id, values=values)
    return target


class TokenManager:
    """Hands out fresh institution access tokens; the one place that refreshes them."""

    def __init__(
        self,
        resources: AppResources,
        *,
        origin: AuditOrigin | None = None,
        clock: Callable[[], datetime] = utcnow,
        refresh_margin: timedelta | None = None,
        lock_lease: float = LOCK_LEASE_SECONDS,
        lock_wait: float = LOCK_WAIT_SECONDS,
    ) -> None:
        """Bind to the application's resources.

        Args:
            resources: Database, KV store, vault and provider registry.
            origin: Request IP and id recorded in audit rows (None for background jobs).
            clock: The current time (tests move it).
            refresh_margin: Refresh this long before expiry (default: the setting, 5 min).
            lock_lease: Single-flight lock lease (s).
            lock_wait: Longest wait for another caller's refresh (s).
        """
        self._resources = resources
        self._origin = origin
        self._clock = clock
        self._margin = refresh_margin or timedelta(
            seconds=resources.settings.token_refresh_margin_seconds
        )
        self._lock_lease = lock_lease
        self._lock_wait = lock_wait

    # --- the interface ----------------------------------------------------------------------
    async def access_token(self, provider_id: uuid.UUID, *, force_refresh: bool = False) -> str:
        """A usable access token for the provider, refreshed first when needed.

        Args:
            provider_id: The provider (connection).
            force_refresh: Refresh even if the current token looks fresh (unless another
                caller refreshed it while we waited for the lock).

        Returns:
            The access token (plaintext: never log or return it to clients).

        Raises:
            ProviderNotFound: No such provider.
            NotConnected: No tokens (pending or disconnected).
            ReauthRequired: The refresh token is dead; the provider is now `reauth_required`.
            ProviderError: The institution failed transiently (status unchanged).
            TokenRefreshBusy: Another refresh held the lock for too long.
        """
        snapshot = await self._read(provider_id)
        if not force_refresh and snapshot.is_fresh(self._clock(), self._margin):
            return snapshot.access_token
        seen = snapshot.access_token if force_refresh else None
        trigger = "forced" if force_refresh else "ahead_of_expiry"
        refreshed = await self._refresh_single_flight(provider_id, seen=seen, trigger=trigger)
        return refreshed.access_token

    async def call(self, provider_id: uuid.UUID, fn: Callable[[str], Awaitable[T]]) -> T:
        """Run `fn(access_token)`; on `AccessTokenRejected` refresh once and retry once.

        A second rejection propagates: looping would hammer an institution that keeps
        refusing us.
        """
        token = await self.access_token(provider_id)
        try:
            return await fn(token)
        except AccessTokenRejected:
            log_event(
                logger,
                "provider.token.rejected",
                logging.WARNING,
                provider_id=str(provider_id),
            )
        refreshed = await self._refresh_single_flight(provider_id, seen=token, trigger="rejected")
        return await fn(refreshed.access_token)

    async def refresh_now(
        self, provider_id: uuid.UUID, *, user_id: uuid.UUID | None = None
    ) -> TokenSnapshot:
        """Refresh the access token now (the "refresh" endpoint); returns the new state.

        The row is read once, under the lock: a burst of requests (or a refresh another
        caller finished while we waited for the lock) is answered from that refresh, because
        it set `refreshed_at` within the coalescing window.

        Args:
            provider_id: The provider (connection).
            user_id: Also require this owner: another user's provider is `ProviderNotFound`.

        Raises:
            Like `access_token`.
        """
        async with self._lock(provider_id):
            current = await self._read(provider_id, user_id=user_id)
            if self._just_refreshed(current):
                # A burst of "refresh now" requests costs the institution one refresh.
                return current
            return await self._refresh(current, trigger="manual")

    async def snapshot(self, provider_id: uuid.UUID) -> TokenSnapshot:
        """The provider's current tokens, decrypted (raises like `access_token`)."""
        return await self._read(provider_id)

    # --- single flight ----------------------------------------------------------------------
    async def _refresh_single_flight(
        self, provider_id: uuid.UUID, *, seen: str | None, trigger: str
    ) -> TokenSnapshot:
        """Refresh under the provider's lock unless someone else already did.

        Args:
            seen: The access token the caller holds and wants replaced (rejected, or forced);
                None means "refresh only if it is still not fresh".
        """
        async with self._lock(provider_id):
            current = await self._read(provider_id)
            if seen is None:
                if current.is_fresh(self._clock(), self._margin):
                    return current
            elif current.access_token != seen:
                # Another caller refreshed while we waited: theirs is the token we want.
                return current
            return await self._refresh(current, trigger=trigger)

    def _just_refreshed(self, snapshot: TokenSnapshot) -> bool:
        last = snapshot.refreshed_at
        return last is not None and self._clock() - last < MANUAL_REFRESH_COALESCE

    @asynccontextmanager
    async def _lock(self, provider_id: uuid.UUID) -> AsyncIterator[None]:
        name = f"provider-token-refresh:{provider_id}"
        lock = self._resources.kv.lock(
            name, timeout=self._lock_lease, blocking_timeout=self._lock_wait
        )
        try:
            await lock.__aenter__()
        except LockNotAcquired as exc:
            raise TokenRefreshBusy() from exc
        except KeyValueUnavailable:
            # Degrade to one flight per process; the compare-and-swap writes still keep the
            # row consistent if two replicas refresh at once.
            log_event(
                logger,
                "provider.token.lock_degraded",
                logging.WARNING,
                provider_id=str(provider_id),
                reason="kv_unavailable",
            )
            async with _local_locks.setdefault(name, asyncio.Lock()):
                yield
            return
        try:
            yield
        finally:
            try:
                await lock.__aexit__(None, None, None)
            except KeyValueUnavailable:
                # The lease expires on its own.
                log_event(logger, "provider.token.unlock_failed", logging.WARNING)

    # --- steps (each database step is its own short unit of work) -----------------------------
    async def _read(
        self, provider_id: uuid.UUID, *, user_id: uuid.UUID | None = None
    ) -> TokenSnapshot:
        """The provider and its tokens in one SELECT, decrypted.

        On PostgreSQL the SELECT runs outside any transaction (one round trip); the writes
        that follow compare-and-swap on what it read, so no lock or transaction is needed.
        """
        row = await read_connection(
            self._resources.engine, provider_id=provider_id, user_id=user_id
        )
        if row is None:
            raise ProviderNotFound()
        owner, key, status = row.user_id, row.provider_key, row.status
        if status == ProviderStatus.REAUTH_REQUIRED:
            raise ReauthRequired(provider=key, reason="reauth_required")
        if row.token_id is None or status in (ProviderStatus.PENDING, ProviderStatus.DISCONNECTED):
            raise NotConnected()
        # A token row always has these (NOT NULL); only the outer join makes them optional.
        sealed_access, refresh_count = row.access_token_encrypted, row.refresh_count
        if sealed_access is None or refresh_count is None:  # pragma: no cover - schema says no
            raise NotConnected()
        vault = vault_of(self._resources)
        bound = str(row.token_id)
        try:
            access = vault.decrypt(
                sealed_access, table=TOKENS_TABLE, column=ACCESS_COLUMN, row_id=bound
            )
            refresh = (
                vault.decrypt(
                    row.refresh_token_encrypted,
                    table=TOKENS_TABLE,
                    column=REFRESH_COLUMN,
                    row_id=bound,
                )
                if row.refresh_token_encrypted is not None
                else None
            )
        except DecryptionError as exc:
            # Tampered, moved, or under a key no longer configured: unusable either way.
            log_event(
                logger,
                "provider.token.decrypt_failed",
                logging.ERROR,
                provider_id=str(provider_id),
                key_id=row.key_id,
            )
            await self._mark_reauth_required(
                provider_id,
                owner,
                key,
                expected=sealed_access,
                reason="stored_tokens_unreadable",
            )
            raise ReauthRequired(provider=key, reason="stored_tokens_unreadable") from exc
        return TokenSnapshot(
            provider_id=provider_id,
            user_id=owner,
            provider_key=key,
            status=status,
            row_id=row.token_id,
            access_token=access,
            refresh_token=refresh,
            access_ciphertext=sealed_access,
            access_expires_at=row.access_expires_at,
            refresh_expires_at=row.refresh_expires_at,
            scope=row.scope,
            refresh_count=refresh_count,
            refreshed_at=row.refreshed_at,
            connected_at=row.connected_at,
        )

    def _client(self, key: str) -> ProviderClient:
        return providers_of(self._resources).get(key)

    async def _refresh(self, snapshot: TokenSnapshot, *, trigger: str) -> TokenSnapshot:
        now = self._clock()
        if snapshot.refresh_token is None or snapshot.refresh_expired(now):
            # No point asking the institution: only a new login helps.
            reason = "no_refresh_token" if snapshot.refresh_token is None else "refresh_expired"
            if await self._give_up(snapshot, reason):
                metrics.token_refresh("reauth_required", provider=snapshot.provider_key)
                raise ReauthRequired(provider=snapshot.provider_key, reason=reason)
            return await self._read(snapshot.provider_id)
        client = self._client(snapshot.provider_key)
        try:
            tokens = await client.refresh(snapshot.refresh_token)
        except ReauthRequired as exc:
            if await self._give_up(snapshot, exc.reason or "refresh_rejected"):
                metrics.token_refresh("reauth_required", provider=snapshot.provider_key)
                raise
            # Someone rewrote the tokens meanwhile (a newer login): use theirs.
            return await self._read(snapshot.provider_id)
        except ProviderError as exc:
            await self._record_refresh_failure(snapshot, exc, trigger=trigger)
            if trigger == "ahead_of_expiry" and snapshot.is_usable(self._clock()):
                # The old token still works for a while: serve it, refresh again next time.
                log_event(
                    logger,
                    "provider.token.refresh_deferred",
                    logging.WARNING,
                    provider_id=str(snapshot.provider_id),
                    error_type=type(exc).__name__,
                )
                metrics.token_refresh("deferred", provider=snapshot.provider_key)
                return snapshot
            metrics.token_refresh("failed", provider=snapshot.provider_key)
            raise
        return await self._store_refreshed(snapshot, tokens, trigger=trigger)

    async def _store_refreshed(
        self, snapshot: TokenSnapshot, tokens: TokenSet, *, trigger: str
    ) -> TokenSnapshot:
        now = self._clock()
        outcome = refresh_outcome(snapshot.refresh_token, tokens.refresh_token)
        # Kept when the institution repeats or omits it; stored when it sends a new one.
        refresh_token = tokens.refresh_token or snapshot.refresh_token
        sealed = seal_tokens(
            vault_of(self._resources),
            row_id=snapshot.row_id,
            access_token=tokens.access_token,
            refresh_token=refresh_token,
        )
        count = snapshot.refresh_count + 1
        values: dict[str, Any] = {
            "access_token_encrypted": sealed.access_ciphertext,
            "refresh_token_encrypted": sealed.refresh_ciphertext,
            "key_id": sealed.key_id,
            "token_type": (tokens.token_type or "Bearer")[:32],
            "scope": (tokens.scope or snapshot.scope or None),
            "access_expires_at": tokens.access_expires_at,
            # refresh_expires_at deliberately untouched: refreshing never extends it.
            "refreshed_at": now,
            "refresh_count": count,
            "updated_at": now,
        }
        details = {"trigger": trigger, "rotation_outcome": outcome, "refresh_count": count}
        actions = [AuditAction.TOKEN_REFRESHED]
        if outcome == "rotated":
            actions.append(AuditAction.TOKEN_ROTATED)
        audit_rows = [self._audit_values(snapshot, action, details=details) for action in actions]
        activate = (snapshot.provider_id, now) if snapshot.status != ProviderStatus.ACTIVE else None
        # One statement on the driver on PostgreSQL (no transaction to open); a unit of work
        # on SQLite.
        swap: dict[str, Any] = {
            "row_id": snapshot.row_id,
            "expected_access_ciphertext": snapshot.access_ciphertext,
            "values": values,
            "audit_rows": audit_rows,
            "activate": activate,
        }
        engine = self._resources.engine
        if engine.dialect.driver == "asyncpg":
            swapped = await swap_tokens_with_audit_direct(engine, **swap)
        else:
            async with statement_scope(self._resources) as session:
                swapped = await repo.swap_tokens_with_audit(session, **swap)
        if not swapped:
            log_event(
                logger,
                "provider.token.refresh_superseded",
                logging.WARNING,
                provider_id=str(snapshot.provider_id),
            )
            metrics.token_refresh("superseded", provider=snapshot.provider_key)
            return await self._read(snapshot.provider_id)
        for row in audit_rows:
            log_recorded(row)
        log_event(
            logger,
            "provider.token.refreshed",
            provider_id=str(snapshot.provider_id),
            trigger=trigger,
            rotation_outcome=outcome,
        )
        metrics.token_refresh("ok", provider=snapshot.provider_key)
        return TokenSnapshot(
            provider_id=snapshot.provider_id,
            user_id=snapshot.user_id,
            provider_key=snapshot.provider_key,
            status=ProviderStatus.ACTIVE.value,
            row_id=snapshot.row_id,
            access_token=tokens.access_token,
            refresh_token=refresh_token,
            access_ciphertext=sealed.access_ciphertext,
            access_expires_at=tokens.access_expires_at,
            refresh_expires_at=snapshot.refresh_expires_at,
            scope=values["scope"],
            refresh_count=count,
            refreshed_at=now,
            connected_at=snapshot.connected_at,
        )

    async def _give_up(self, snapshot: TokenSnapshot, reason: str) -> bool:
        """Move the provider to `reauth_required` unless its tokens changed since `snapshot`."""
        return await self._mark_reauth_required(
            snapshot.provider_id,
            snapshot.user_id,
            snapshot.provider_key,
            expected=snapshot.access_ciphertext,
            reason=reason,
        )

    async def _mark_reauth_required(
        self,
        provider_id: uuid.UUID,
        user_id: uuid.UUID,
        provider_key: str,
        *,
        expected: str,
        reason: str,
    ) -> bool:
        async with session_scope(self._resources.session_factory) as session:
            row = await repo.get_tokens(session, provider_id=provider_id, for_update=True)
            if row is None or row.access_token_encrypted != expected:
                return False
            await repo.set_provider_status(
                session,
                provider_id=provider_id,
                status=ProviderStatus.REAUTH_REQUIRED.value,
                last_error="The institution needs you to sign in again.",
                now=self._clock(),
            )
            record(
                session,
                provider_id=provider_id,
                user_id=user_id,
                action=AuditAction.REAUTH_REQUIRED,
                outcome=AuditOutcome.FAILURE,
                origin=self._origin,
                details={"reason": reason, "provider_key": provider_key},
            )
        return True

    async def _record_refresh_failure(
        self, snapshot: TokenSnapshot, exc: ProviderError, *, trigger: str
    ) -> None:
        """Audit a failed refresh; an unreadable reply also marks the provider `error`."""
        async with session_scope(self._resources.session_factory) as session:
            if isinstance(exc, ProviderBadResponse):
                await repo.set_provider_status(
                    session,
                    provider_id=snapshot.provider_id,
                    status=ProviderStatus.ERROR.value,
                    last_error="The institution sent a token reply we could not read.",
                    now=self._clock(),
                )
            self._audit(
                session,
                snapshot,
                AuditAction.TOKEN_REFRESH_FAILED,
                outcome=AuditOutcome.FAILURE,
                details={
                    "trigger": trigger,
                    "error_type": type(exc).__name__,
                    "reason": exc.reason,
                },
            )

    def _audit_values(
        self,
        snapshot: TokenSnapshot,
        action: AuditAction,
        *,
        details: dict[str, Any],
    ) -> dict[str, Any]:
        return audit_values(
            provider_id=snapshot.provider_id,
            user_id=snapshot.user_id,
            action=action,
            origin=self._origin,
            details=details,
        )

    def _audit(
        self,
        session: AsyncSession,
        snapshot: TokenSnapshot,
        action: AuditAction,
        *,
        outcome: AuditOutcome = AuditOutcome.SUCCESS,
        details: dict[str, Any] | None = None,
    ) -> None:
        record(
            session,
            provider_id=snapshot.provider_id,
            user_id=snapshot.user_id,
            action=action,
            outcome=outcome,
            origin=self._origin,
            details=details,
        )
