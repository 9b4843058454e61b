"""Connecting an institution: start an authorization, then complete it from the callback.

The state sent to the institution is `<provider id>.<256 random bits>`. Only its keyed hash is
stored (table `oauth_states`), with the user, the provider, a 10-minute expiry and — when the
provider supports PKCE — the encrypted code verifier. The callback is authenticated by that
state alone: it is claimed with one conditional UPDATE (single use, exactly one winner), and
anything else — malformed, unknown, expired, used, another provider's — is `invalid_state`
with nothing stored.

Why the database and not the KV store: the state must die with its provider (foreign key,
cascade), single use needs an atomic claim that both backends give us with
`UPDATE … RETURNING`, the embedded KV store is per process (a second API worker would not see
it), and a Redis flush or outage must not break connections in flight.

Completing a callback never holds a transaction across the code exchange: claim the state
(commit) → exchange the code upstream → store the tokens (commit) → queue the first sync.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.database import session_scope
from dashtam.core.errors import TooManyRequests
from dashtam.core.logging import log_event
from dashtam.core.observability import metrics
from dashtam.core.state import AppResources, statement_scope
from dashtam.core.tokens import new_opaque_token
from dashtam.core.types import utcnow
from dashtam.models.provider import OAuthState, ProviderStatus
from dashtam.providers.base import Capability, TokenSet
from dashtam.providers.errors import (
    AuthorizationFailed,
    ProviderError,
    UnknownProvider,
    to_app_error,
)
from dashtam.services.connections import events
from dashtam.services.connections import repository as repo
from dashtam.services.connections.audit import (
    AuditAction,
    AuditOrigin,
    AuditOutcome,
    record,
    record_detached,
)
from dashtam.services.connections.context import (
    hasher_of,
    limiter_of,
    providers_of,
    vault_of,
)
from dashtam.services.connections.errors import AuthorizationRefused, InvalidState
from dashtam.services.connections.service import AuthorizationState, ConnectionService
from dashtam.services.connections.tokens import TokenManager, TokenSnapshot, write_new_tokens

logger = logging.getLogger("dashtam.connections.authorization")

STATE_PURPOSE = "oauth-state"
STATES_TABLE = "oauth_states"
VERIFIER_COLUMN = "code_verifier_encrypted"
#: `<uuid>.<43 base64url characters>` (256 bits from `new_opaque_token`).
_STATE_PATTERN = re.compile(
    r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.([A-Za-z0-9_-]{43})$"
)
#: OAuth error codes are short ASCII words; anything else is shown as "unknown".
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: Used or expired states are deleted after this long (kept briefly to tell replays apart).
STATE_RETENTION = timedelta(days=1)
#: A process purges stale states at most this often (on an authorization start).
STATE_PURGE_INTERVAL_SECONDS = 300.0
_PURGED_AT_KEY = "oauth_states_purged_at"


@dataclass(frozen=True)
class AuthorizationStart:
    """What the client opens in the account holder's browser."""

    authorization_url: str
    state: str
    expires_at: datetime


@dataclass(frozen=True)
class CallbackResult:
    """A completed authorization."""

    provider_id: uuid.UUID
    status: str
    message: str


def parse_state(state: str | None) -> uuid.UUID | None:
    """The provider id a well-formed state starts with, or None."""
    if not state:
        return None
    match = _STATE_PATTERN.fullmatch(state)
    if match is None:
        return None
    return uuid.UUID(match.group(1))


def pkce_pair() -> tuple[str, str]:
    """A fresh RFC 7636 verifier (86 characters) and its S256 challenge."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")
    return verifier, challenge


def state_of_snapshot(snapshot: TokenSnapshot) -> AuthorizationState:
    """The client-visible authorization status of a token snapshot (never a token)."""
    return AuthorizationState(
        status=snapshot.status,
        connected_at=snapshot.connected_at,
        access_expires_at=snapshot.access_expires_at,
        refresh_expires_at=snapshot.refresh_expires_at,
        scope=snapshot.scope,
        last_refreshed_at=snapshot.refreshed_at,
        refresh_count=snapshot.refresh_count,
    )


def _institution_error_message(error: str) -> str:
    if error == "access_denied":
        return (
            "Access was declined at the institution, so nothing was connected. "
            "You can start the connection again at any time."
        )
    return (
        f"The institution reported an error ({error}), so nothing was connected. "
        "Start the connection again."
    )


class AuthorizationService:
    """Starts and completes institution authorizations."""

    def __init__(self, resources: AppResources, *, origin: AuditOrigin) -> None:
        self._resources = resources
        self._origin = origin

    async def start(
        self, session: AsyncSession, *, user_id: uuid.UUID, provider_id: uuid.UUID
    ) -> AuthorizationStart:
        """Issue a single-use state and the institution's authorize URL.

        Raises:
            ProviderNotFound: Missing or someone else's.
            AppError: 400 `unknown_provider` / `provider_not_configured`; 429 when the caller
                started too many authorizations recently.
        """
        connections = ConnectionService(session, self._resources, origin=self._origin)
        provider = await connections.get(user_id=user_id, provider_id=provider_id)
        client = connections.client_for(provider.provider_key)
        await self._limit(user_id)
        now = utcnow()
        expires_at = now + timedelta(minutes=self._resources.settings.oauth_state_ttl_minutes)
        state = f"{provider_id}.{new_opaque_token()}"
        row = OAuthState(
            id=uuid.uuid4(),
            state_hash=hasher_of(self._resources).digest(state, purpose=STATE_PURPOSE),
            user_id=user_id,
            provider_id=provider_id,
            created_at=now,
            expires_at=expires_at,
        )
        challenge: str | None = None
        uses_pkce = Capability.PKCE in client.capabilities
        if uses_pkce:
            verifier, challenge = pkce_pair()
            row.code_verifier_encrypted = vault_of(self._resources).encrypt(
                verifier, table=STATES_TABLE, column=VERIFIER_COLUMN, row_id=str(row.id)
            )
        url = client.authorization_url(state=state, code_challenge=challenge)
        if self._purge_due():
            await repo.purge_stale_states(session, before=now - STATE_RETENTION)
        session.add(row)
        record(
            session,
            provider_id=provider_id,
            user_id=user_id,
            action=AuditAction.AUTHORIZATION_STARTED,
            origin=self._origin,
            details={"provider_key": provider.provider_key, "pkce": uses_pkce},
        )
        await session.flush()
        return AuthorizationStart(authorization_url=url, state=state, expires_at=expires_at)

    async def refresh(self, *, user_id: uuid.UUID, provider_id: uuid.UUID) -> AuthorizationState:
        """Refresh the caller's provider's access token now and return the new status.

        Under the provider's single-flight lock: one read (ownership, status and tokens
        together), the upstream refresh with no transaction open, one unit of work writing the
        tokens and the audit row. The answer is built from what was written, not read again.

        Raises:
            ProviderNotFound: Missing or someone else's.
            NotConnected: 409 `not_connected` (pending or disconnected).
            AppError: 409 `reauth_required`; 502/503/504 when the institution fails.
        """
        manager = TokenManager(self._resources, origin=self._origin)
        try:
            snapshot = await manager.refresh_now(provider_id, user_id=user_id)
        except (ProviderError, UnknownProvider) as exc:
            raise to_app_error(exc) from exc
        return state_of_snapshot(snapshot)

    def _purge_due(self) -> bool:
        """Whether this start should also delete stale states (once per interval per process).

        Stale states can never match again, so how soon they go only bounds the table's
        size; purging on every start would cost each one a DELETE round trip.
        """
        extras = self._resources.extras
        now = time.monotonic()
        last: float | None = extras.get(_PURGED_AT_KEY)
        if last is not None and now - last < STATE_PURGE_INTERVAL_SECONDS:
            return False
        extras[_PURGED_AT_KEY] = now
        return True

    async def _limit(self, user_id: uuid.UUID) -> None:
        rule = self._resources.settings.rate_limit_provider_authorization
        outcome = await limiter_of(self._resources).hit(
            rule, "provider-authorization:user", str(user_id)
        )
        if not outcome.allowed:
            metrics.rate_limited("provider_authorization")
            raise TooManyRequests(
                "Too many authorization attempts; try again later.",
                retry_after=outcome.retry_after,
            )

    async def complete(
        self,
        *,
        provider_id: uuid.UUID,
        state: str | None,
        code: str | None,
        error: str | None,
    ) -> CallbackResult:
        """Finish an authorization from the institution's redirect.

        Args:
            provider_id: The provider named in the callback path.
            state: The state the institution echoed back.
            code: The authorization code (absent when `error` is set).
            error: The institution's OAuth error code (`access_denied`, …), if any.

        Returns:
            The now-active provider.

        Raises:
            InvalidState: 400 `invalid_state`; nothing stored.
            AuthorizationRefused: 400 `authorization_failed` (institution error, bad code).
            AppError: 502/503/504 when the institution fails; status unchanged.
        """
        if parse_state(state) != provider_id or state is None:
            log_event(logger, "provider.callback.invalid_state", logging.WARNING, reason="format")
            raise InvalidState()
        if not code and not error:
            raise AuthorizationRefused("The callback carried neither a code nor an error.")
        digest = hasher_of(self._resources).digest(state, purpose=STATE_PURPOSE)
        now = utcnow()
        # Two statements that each stand alone (on PostgreSQL: no transaction around them).
        # The claim is one atomic UPDATE and commits before the code leaves this process.
        async with statement_scope(self._resources) as session:
            claimed = await repo.consume_state(
                session, state_hash=digest, provider_id=provider_id, now=now
            )
            provider = (
                await repo.provider_brief(session, provider_id=provider_id) if claimed else None
            )
        provider_key = provider.provider_key if provider else ""
        previous_status = provider.status if provider else ""
        if claimed is None or provider is None or claimed.user_id != provider.user_id:
            log_event(logger, "provider.callback.invalid_state", logging.WARNING, reason="claim")
            raise InvalidState()
        user_id: uuid.UUID = claimed.user_id
        if error:
            code_name = error if _ERROR_CODE.fullmatch(error) else "unknown_error"
            await self._fail(provider_id, user_id, reason=code_name)
            raise AuthorizationRefused(_institution_error_message(code_name))
        assert code is not None
        verifier = (
            vault_of(self._resources).decrypt(
                claimed.code_verifier_encrypted,
                table=STATES_TABLE,
                column=VERIFIER_COLUMN,
                row_id=str(claimed.id),
            )
            if claimed.code_verifier_encrypted
            else None
        )
        try:
            client = providers_of(self._resources).get(provider_key)
            tokens = await client.exchange_code(code, verifier)
        except AuthorizationFailed as exc:
            await self._fail(provider_id, user_id, reason=exc.reason or "code_rejected")
            if exc.client_misconfigured:
                raise AuthorizationRefused(
                    "The institution rejected this server's app credentials; "
                    "ask the operator to check them."
                ) from exc
            raise AuthorizationRefused(
                "The institution refused the authorization code (it expired or was already "
                "used). Start the connection again."
            ) from exc
        except (ProviderError, UnknownProvider) as exc:
            await self._fail(provider_id, user_id, reason=exc.reason or type(exc).__name__)
            raise to_app_error(exc) from exc
        return await self._store(
            provider_id,
            user_id,
            provider_key,
            tokens=tokens,
            refresh_max_age=client.refresh_token_max_age,
            reauthorized=previous_status != ProviderStatus.PENDING,
        )

    async def _store(
        self,
        provider_id: uuid.UUID,
        user_id: uuid.UUID,
        provider_key: str,
        *,
        tokens: TokenSet,
        refresh_max_age: timedelta | None,
        reauthorized: bool,
    ) -> CallbackResult:
        """Tokens, status, audit row and the first sync's run: one unit of work.

        Locks in the order the refresh path takes them (token row, then provider row), so a
        callback and a refresh of the same provider never deadlock on PostgreSQL.
        """
        now = utcnow()
        async with session_scope(self._resources.session_factory) as session:
            row_id = await repo.token_row_id(session, provider_id=provider_id, for_update=True)
            if not await repo.activate_provider(session, provider_id=provider_id, now=now):
                # Deleted while the code was being exchanged: there is nothing to connect.
                raise InvalidState()
            await write_new_tokens(
                session,
                vault_of(self._resources),
                provider_id=provider_id,
                row_id=row_id,
                tokens=tokens,
                refresh_max_age=refresh_max_age,
                now=now,
            )
            record(
                session,
                provider_id=provider_id,
                user_id=user_id,
                action=AuditAction.CALLBACK,
                origin=self._origin,
                details={
                    "provider_key": provider_key,
                    "reauthorized": reauthorized,
                    "refresh_issued": tokens.refresh_token is not None,
                },
            )
            await events.on_connected(
                session, self._resources, user_id=user_id, provider_id=provider_id
            )
        return CallbackResult(
            provider_id=provider_id,
            status=ProviderStatus.ACTIVE.value,
            message="Connected. Your accounts will appear after the first sync.",
        )

    async def _fail(self, provider_id: uuid.UUID, user_id: uuid.UUID, *, reason: str) -> None:
        await record_detached(
            self._resources,
            provider_id=provider_id,
            user_id=user_id,
            action=AuditAction.CALLBACK,
            outcome=AuditOutcome.FAILURE,
            origin=self._origin,
            details={"reason": reason},
        )
