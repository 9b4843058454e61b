"""Changing a password, and resetting a forgotten one by email.

A new password ends every outstanding verification and reset token, and revokes sessions (all
of them on reset; all but the caller's on change), so a stolen session or link dies with the old
password. Changing and completing a reset own their units of work: the slow hashing runs
between two short transactions, never inside one.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.database import SessionFactory, session_scope
from dashtam.core.passwords import check_password_policy
from dashtam.core.tokens import InvalidAccessToken, new_opaque_token
from dashtam.core.types import utcnow
from dashtam.models.auth import EmailVerificationToken, PasswordResetToken
from dashtam.services.auth import repository
from dashtam.services.auth.errors import InvalidPassword, InvalidResetToken, TooManyAttempts
from dashtam.services.auth.lockout import LoginLockout
from dashtam.services.auth.login import record_failure
from dashtam.services.auth.principal import AuthContext
from dashtam.services.auth.security_events import SecurityEventType, record_event
from dashtam.services.auth.sessions import (
    REASON_PASSWORD_CHANGED,
    REASON_PASSWORD_RESET,
    revoke_user_sessions,
)
from dashtam.services.auth.toolkit import (
    PURPOSE_RESET,
    AuthToolkit,
    ClientInfo,
    Mailer,
    normalize_email,
)


async def _void_email_tokens(session: AsyncSession, *, user_id: uuid.UUID, now: datetime) -> None:
    for model in (PasswordResetToken, EmailVerificationToken):
        await repository.spend_unused_tokens(session, model, user_id=user_id, now=now)


async def change_password(
    *,
    factory: SessionFactory,
    tk: AuthToolkit,
    mailer: Mailer,
    auth: AuthContext,
    current_password: str,
    new_password: str,
    client: ClientInfo,
    now: datetime | None = None,
) -> None:
    """Replace the caller's password after checking the current one.

    Wrong current passwords count toward the same lockout as failed logins: a stolen access
    token must not become a password-guessing oracle.

    Raises:
        WeakPassword: The new password breaks the policy.
        TooManyAttempts: The account identifier is locked.
        InvalidPassword: The current password is wrong (or the password changed meanwhile).
    """
    now = now or utcnow()
    async with session_scope(factory) as session:
        user = await repository.find_credentials_by_id(session, user_id=auth.user_id)
    if user is None or not user.is_active:
        raise InvalidAccessToken()
    check_password_policy(new_password, email=user.email)
    lockout = LoginLockout(tk)
    lock = await lockout.check(user.email)
    if lock.locked:
        raise TooManyAttempts(retry_after=lock.retry_after)
    valid, _ = await tk.passwords.verify(current_password, user.password_hash)
    if not valid:
        await record_failure(
            factory=factory,
            tk=tk,
            lockout=lockout,
            email=user.email,
            user_id=user.id,
            event=SecurityEventType.PASSWORD_CHANGE_FAILED,
            client=client,
            now=now,
            reason="wrong_current_password",
        )
        raise InvalidPassword()
    new_hash = await tk.passwords.hash(new_password)
    async with session_scope(factory) as session:
        changed = await repository.replace_password_hash(
            session, user_id=user.id, new_hash=new_hash, expected_hash=user.password_hash
        )
        if not changed:
            # Someone changed or reset the password between our read and this write.
            raise InvalidPassword()
        await _void_email_tokens(session, user_id=user.id, now=now)
        await revoke_user_sessions(
            session,
            tk,
            user_id=user.id,
            reason=REASON_PASSWORD_CHANGED,
            client=client,
            now=now,
            keep=auth.session_id,
        )
        record_event(
            session, SecurityEventType.PASSWORD_CHANGED, user_id=user.id, client=client, now=now
        )
        mailer.send_after_commit(
            session, to=user.email, template="password_changed", name=user.name
        )
    if lock.had_failures:
        await lockout.clear(user.email)


async def request_reset(
    session: AsyncSession,
    tk: AuthToolkit,
    mailer: Mailer,
    *,
    email: str,
    now: datetime | None = None,
) -> None:
    """Email a reset token to an active account; do the same work and nothing else otherwise.

    A new token supersedes (spends) every older unused one of the user.
    """
    email = normalize_email(email)
    token = new_opaque_token()
    digest = tk.keyed.digest(token, purpose=PURPOSE_RESET)
    now = now or utcnow()
    user = await repository.find_contact_by_email(session, email=email)
    if user is None or not user.is_active:
        return
    await repository.supersede_single_use_token(
        session,
        PasswordResetToken,
        user_id=user.id,
        token_hash=digest,
        now=now,
        expires_at=now + tk.reset_ttl,
    )
    mailer.send_after_commit(
        session, to=user.email, template="password_reset", name=user.name, token=token
    )


async def check_reset_token(
    session: AsyncSession, tk: AuthToolkit, *, token: str, now: datetime | None = None
) -> datetime:
    """Return when a live reset token expires.

    Raises:
        InvalidResetToken: Unknown, expired, superseded or used.
    """
    digest = tk.keyed.digest(token, purpose=PURPOSE_RESET)
    row = await repository.find_live_reset_token(session, token_hash=digest, now=now or utcnow())
    if row is None:
        raise InvalidResetToken()
    expires_at: datetime = row.expires_at
    return expires_at


async def complete_reset(
    *,
    factory: SessionFactory,
    tk: AuthToolkit,
    mailer: Mailer,
    token: str,
    new_password: str,
    client: ClientInfo,
    now: datetime | None = None,
) -> None:
    """Set a new password with a reset token; the token is spent and every session revoked.

    A completed reset also clears the login lockout and marks the email verified (the reset
    link proved control of the mailbox).

    Raises:
        InvalidResetToken: Unknown, expired, superseded or used (also when raced).
        WeakPassword: The new password breaks the policy (the token stays usable).
    """
    now = now or utcnow()
    digest = tk.keyed.digest(token, purpose=PURPOSE_RESET)
    async with session_scope(factory) as session:
        row = await repository.find_live_reset_token(session, token_hash=digest, now=now)
    if row is None:
        raise InvalidResetToken()
    check_password_policy(new_password, email=row.email)
    new_hash = await tk.passwords.hash(new_password)
    async with session_scope(factory) as session:
        user_id = await repository.claim_single_use_token(
            session, PasswordResetToken, token_hash=digest, now=now
        )
        if user_id is None:
            raise InvalidResetToken()
        await repository.replace_password_hash(
            session, user_id=user_id, new_hash=new_hash, clear_lockout=True
        )
        await repository.mark_email_verified(session, user_id=user_id, now=now)
        await _void_email_tokens(session, user_id=user_id, now=now)
        await revoke_user_sessions(
            session, tk, user_id=user_id, reason=REASON_PASSWORD_RESET, client=client, now=now
        )
        record_event(
            session, SecurityEventType.PASSWORD_RESET, user_id=user_id, client=client, now=now
        )
        mailer.send_after_commit(session, to=row.email, template="password_changed", name=row.name)
    await LoginLockout(tk).clear(row.email)
