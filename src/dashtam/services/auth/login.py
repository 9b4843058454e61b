"""Password login: throttling, lockout, constant-shape failures, hash upgrades, new session.

Login owns its units of work so the ~100 ms password verification never runs inside a database
transaction (on SQLite every transaction holds the write lock) and so a failed attempt's record
is committed even though the request answers 401.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from dashtam.core.database import SessionFactory, session_scope
from dashtam.core.types import utcnow
from dashtam.services.auth import repository
from dashtam.services.auth.errors import (
    AccountDisabled,
    EmailNotVerified,
    InvalidCredentials,
    TooManyAttempts,
)
from dashtam.services.auth.lockout import LoginLockout
from dashtam.services.auth.principal import UserProfile
from dashtam.services.auth.security_events import SecurityEventType, record_event
from dashtam.services.auth.sessions import TokenPair, start_session
from dashtam.services.auth.toolkit import AuthToolkit, ClientInfo, normalize_email


@dataclass(frozen=True)
class LoginResult:
    """A successful login: the new token pair and the user's profile."""

    tokens: TokenPair
    user: UserProfile


async def record_failure(
    *,
    factory: SessionFactory,
    tk: AuthToolkit,
    lockout: LoginLockout,
    email: str,
    user_id: uuid.UUID | None,
    event: SecurityEventType,
    client: ClientInfo,
    now: datetime,
    reason: str,
) -> None:
    """Count a failed password check toward the lockout and record it, in its own commit."""
    outcome = await lockout.register_failure(email)
    async with session_scope(factory) as session:
        just_locked = outcome.just_locked
        if not outcome.kv_available and user_id is not None:
            row = await repository.count_failed_login(
                session,
                user_id=user_id,
                threshold=lockout.threshold,
                lock_until=lockout.lock_deadline(now),
            )
            # The count restarts at 0 exactly when this failure took the lock.
            just_locked = row is not None and row.failed_login_count == 0
        record_event(session, event, user_id=user_id, client=client, now=now, reason=reason)
        if just_locked:
            record_event(
                session,
                SecurityEventType.LOGIN_LOCKED,
                user_id=user_id,
                client=client,
                now=now,
                minutes=int(lockout.duration.total_seconds() // 60),
            )


async def login(
    *,
    factory: SessionFactory,
    tk: AuthToolkit,
    email: str,
    password: str,
    client: ClientInfo,
    now: datetime | None = None,
) -> LoginResult:
    """Check a password and open a session.

    Raises:
        TooManyAttempts: The identifier is locked (even when the password is right).
        InvalidCredentials: Unknown email or wrong password (same answer, same cost).
        AccountDisabled: Right password, disabled account.
        EmailNotVerified: Right password, email not verified yet.
    """
    now = now or utcnow()
    email = normalize_email(email)
    lockout = LoginLockout(tk)
    lock = await lockout.check(email)
    if lock.locked:
        raise TooManyAttempts(retry_after=lock.retry_after)

    async with session_scope(factory) as session:
        user = await repository.find_credentials_by_email(session, email=email)
    if user is not None and user.locked_until is not None and user.locked_until > now:
        retry = max(1, int((user.locked_until - now).total_seconds()))
        raise TooManyAttempts(retry_after=retry)

    if user is None:
        # Same work as a real check, so timing does not reveal whether the account exists.
        await tk.passwords.verify_dummy(password)
        valid, upgraded = False, None
    else:
        valid, upgraded = await tk.passwords.verify(password, user.password_hash)
    if not valid:
        await record_failure(
            factory=factory,
            tk=tk,
            lockout=lockout,
            email=email,
            user_id=user.id if user is not None else None,
            event=SecurityEventType.LOGIN_FAILED,
            client=client,
            now=now,
            reason="unknown_email" if user is None else "wrong_password",
        )
        raise InvalidCredentials()
    assert user is not None
    if not user.is_active:
        raise AccountDisabled()
    if user.email_verified_at is None:
        raise EmailNotVerified()

    async with session_scope(factory) as session:
        if upgraded is not None:
            # Compare-and-set: a password changed meanwhile is never overwritten by the upgrade.
            await repository.replace_password_hash(
                session, user_id=user.id, new_hash=upgraded, expected_hash=user.password_hash
            )
        await repository.record_login(
            session, user_id=user.id, now=now, ip_address=client.ip_address
        )
        tokens = await start_session(session, tk, user_id=user.id, client=client, now=now)
        record_event(
            session,
            SecurityEventType.LOGIN_SUCCEEDED,
            user_id=user.id,
            client=client,
            now=now,
            session_id=str(tokens.session_id),
            hash_upgraded=upgraded is not None,
        )
    if lock.had_failures:
        await lockout.clear(email)
    profile = UserProfile(
        id=user.id,
        email=user.email,
        name=user.name,
        email_verified_at=user.email_verified_at,
        is_active=user.is_active,
        created_at=user.created_at,
        last_login_at=now,
    )
    return LoginResult(tokens=tokens, user=profile)
