"""Login sessions: issuing token pairs, rotating refresh tokens, authenticating requests,
listing and revoking sessions.

Refresh owns its unit of work: a replayed (already spent) refresh token must revoke the whole
session *and* answer 401, so the revocation is committed first and the error raised after.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.database import SessionFactory, session_scope
from dashtam.core.tokens import InvalidAccessToken, new_opaque_token
from dashtam.core.types import utcnow
from dashtam.services.auth import repository, session_state
from dashtam.services.auth.errors import InvalidRefreshToken, SessionNotFound
from dashtam.services.auth.principal import AuthContext
from dashtam.services.auth.security_events import SecurityEventType, record_event
from dashtam.services.auth.toolkit import PURPOSE_REFRESH, AuthToolkit, ClientInfo

#: `revoke_reason` values.
REASON_LOGOUT = "logout"
REASON_USER = "revoked_by_user"
REASON_OTHERS = "revoked_others"
REASON_REUSE = "refresh_token_reuse"
REASON_PASSWORD_CHANGED = "password_changed"  # noqa: S105 (a reason label, not a secret)
REASON_PASSWORD_RESET = "password_reset"  # noqa: S105 (a reason label, not a secret)


@dataclass(frozen=True)
class TokenPair:
    """An access token and a refresh token, with their expiries."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime

    def seconds_left(self, now: datetime) -> tuple[int, int]:
        """`(expires_in, refresh_expires_in)` in whole seconds from `now`."""
        access = max(0, math.floor((self.access_expires_at - now).total_seconds()))
        refresh = max(0, math.floor((self.refresh_expires_at - now).total_seconds()))
        return access, refresh


@dataclass(frozen=True)
class SessionInfo:
    """One live session as shown to its owner."""

    id: uuid.UUID
    user_agent: str | None
    ip_address: str | None
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    is_current: bool


async def _add_refresh_token(
    session: AsyncSession,
    tk: AuthToolkit,
    *,
    session_id: uuid.UUID,
    now: datetime,
    expires_at: datetime,
) -> str:
    token = new_opaque_token()
    await repository.add_refresh_token(
        session,
        session_id=session_id,
        token_hash=tk.keyed.digest(token, purpose=PURPOSE_REFRESH),
        now=now,
        expires_at=expires_at,
    )
    return token


async def start_session(
    session: AsyncSession,
    tk: AuthToolkit,
    *,
    user_id: uuid.UUID,
    client: ClientInfo,
    now: datetime,
) -> TokenPair:
    """Create a login session with its first refresh token and an access token.

    The session (and every refresh token in it) ends `refresh_token_ttl_days` after login,
    however often it is refreshed.
    """
    expires_at = now + tk.session_lifetime
    session_id = await repository.add_session(
        session,
        user_id=user_id,
        now=now,
        expires_at=expires_at,
        ip_address=client.ip_address,
        user_agent=client.user_agent,
    )
    refresh = await _add_refresh_token(
        session, tk, session_id=session_id, now=now, expires_at=expires_at
    )
    access, access_expires = tk.codec.encode(user_id=user_id, session_id=session_id, now=now)
    return TokenPair(user_id, session_id, access, access_expires, refresh, expires_at)


async def refresh_session(
    *,
    factory: SessionFactory,
    tk: AuthToolkit,
    refresh_token: str,
    client: ClientInfo,
    now: datetime | None = None,
) -> TokenPair:
    """Exchange a refresh token for a new pair; the presented token is spent.

    The token is claimed by one conditional UPDATE in the same transaction that issues its
    successor, so of N concurrent exchanges exactly one wins. Presenting a token that was
    already spent means it leaked (or a client raced itself): the whole session is revoked and
    a `refresh_token_reused` event recorded, committed before the 401 is raised.

    Raises:
        InvalidRefreshToken: Unknown, expired, spent, or its session/user is no longer live.
    """
    now = now or utcnow()
    digest = tk.keyed.digest(refresh_token, purpose=PURPOSE_REFRESH)
    pair: TokenPair | None = None
    async with session_scope(factory) as session:
        session_id = await repository.claim_refresh_token(session, token_hash=digest, now=now)
        if session_id is not None:
            state = await repository.get_session_for_refresh(session, session_id=session_id)
            if (
                state is not None
                and state.revoked_at is None
                and state.expires_at > now
                and state.is_active
            ):
                refresh = await _add_refresh_token(
                    session, tk, session_id=session_id, now=now, expires_at=state.expires_at
                )
                await repository.touch_session(session, session_id=session_id, now=now)
                access, access_expires = tk.codec.encode(
                    user_id=state.user_id, session_id=session_id, now=now
                )
                pair = TokenPair(
                    state.user_id, session_id, access, access_expires, refresh, state.expires_at
                )
        else:
            await _handle_unclaimable(session, tk, digest=digest, client=client, now=now)
    if pair is None:
        raise InvalidRefreshToken()
    return pair


async def _handle_unclaimable(
    session: AsyncSession, tk: AuthToolkit, *, digest: str, client: ClientInfo, now: datetime
) -> None:
    known = await repository.find_refresh_token(session, token_hash=digest)
    if known is None or known.used_at is None:
        return  # unknown or merely expired: nothing to revoke
    state = await repository.get_session_state(session, session_id=known.session_id)
    if state is None:
        return
    revoked = await repository.revoke_sessions(
        session,
        user_id=state.user_id,
        session_ids=[known.session_id],
        now=now,
        reason=REASON_REUSE,
    )
    await session_state.mark_ended(tk, revoked)
    record_event(
        session,
        SecurityEventType.REFRESH_TOKEN_REUSED,
        user_id=state.user_id,
        client=client,
        now=now,
        session_id=str(known.session_id),
        session_revoked=bool(revoked),
    )


async def authenticate(
    factory: SessionFactory,
    tk: AuthToolkit,
    *,
    access_token: str,
    now: datetime | None = None,
) -> AuthContext:
    """Verify an access token and that its session is still live (a cached check).

    Raises:
        InvalidAccessToken: Bad, expired or forged token, or a revoked/expired session.
    """
    claims = tk.codec.decode(access_token)
    live = await session_state.is_session_live(
        tk,
        factory,
        session_id=claims.session_id,
        user_id=claims.user_id,
        now=now or utcnow(),
    )
    if not live:
        raise InvalidAccessToken()
    return AuthContext(user_id=claims.user_id, session_id=claims.session_id, claims=claims)


async def list_sessions(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    current_session_id: uuid.UUID,
    now: datetime | None = None,
    limit: int = repository.MAX_LISTED_SESSIONS,
) -> tuple[list[SessionInfo], bool]:
    """The caller's live sessions, newest first, and whether more exist than `limit`."""
    rows = await repository.list_active_sessions(
        session, user_id=user_id, now=now or utcnow(), limit=limit + 1
    )
    items = [
        SessionInfo(
            id=row.id,
            user_agent=row.user_agent,
            ip_address=row.ip_address,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            expires_at=row.expires_at,
            is_current=row.id == current_session_id,
        )
        for row in rows[:limit]
    ]
    return items, len(rows) > limit


async def revoke_user_sessions(
    session: AsyncSession,
    tk: AuthToolkit,
    *,
    user_id: uuid.UUID,
    reason: str,
    client: ClientInfo,
    now: datetime,
    session_ids: Sequence[uuid.UUID] | None = None,
    keep: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    """Revoke sessions of one user, end them in the cache and record the event.

    Returns:
        The ids revoked (foreign, unknown or already revoked ids are silently skipped).
    """
    revoked = await repository.revoke_sessions(
        session, user_id=user_id, now=now, reason=reason, session_ids=session_ids, keep=keep
    )
    if revoked:
        await session_state.mark_ended(tk, revoked)
        record_event(
            session,
            SecurityEventType.SESSION_REVOKED,
            user_id=user_id,
            client=client,
            now=now,
            reason=reason,
            session_ids=[str(sid) for sid in revoked],
        )
    return revoked


async def logout(
    session: AsyncSession,
    tk: AuthToolkit,
    *,
    auth: AuthContext,
    refresh_token: str | None,
    client: ClientInfo,
    now: datetime | None = None,
) -> None:
    """Revoke the caller's current session (and the one a given refresh token belongs to,
    when it is another session of the same user)."""
    targets = [auth.session_id]
    if refresh_token:
        digest = tk.keyed.digest(refresh_token, purpose=PURPOSE_REFRESH)
        known = await repository.find_refresh_token(session, token_hash=digest)
        if known is not None and known.session_id != auth.session_id:
            # Scoped by user id in SQL: someone else's token revokes nothing.
            targets.append(known.session_id)
    await revoke_user_sessions(
        session,
        tk,
        user_id=auth.user_id,
        reason=REASON_LOGOUT,
        client=client,
        now=now or utcnow(),
        session_ids=targets,
    )


async def revoke_session(
    session: AsyncSession,
    tk: AuthToolkit,
    *,
    auth: AuthContext,
    session_id: uuid.UUID,
    client: ClientInfo,
    now: datetime | None = None,
) -> None:
    """Revoke one of the caller's live sessions.

    Raises:
        SessionNotFound: No such live session of the caller (another user's id included).
    """
    revoked = await revoke_user_sessions(
        session,
        tk,
        user_id=auth.user_id,
        reason=REASON_USER,
        client=client,
        now=now or utcnow(),
        session_ids=[session_id],
    )
    if not revoked:
        raise SessionNotFound()


async def revoke_other_sessions(
    session: AsyncSession,
    tk: AuthToolkit,
    *,
    auth: AuthContext,
    client: ClientInfo,
    now: datetime | None = None,
) -> int:
    """Revoke every live session of the caller except the current one; returns how many."""
    revoked = await revoke_user_sessions(
        session,
        tk,
        user_id=auth.user_id,
        reason=REASON_OTHERS,
        client=client,
        now=now or utcnow(),
        keep=auth.session_id,
    )
    return len(revoked)
