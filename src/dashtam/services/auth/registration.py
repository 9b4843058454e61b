"""Registration and email verification, answering identically for known and unknown emails.

Both branches do the same expensive work (the password hash, a token and its digest), so
neither the response nor its timing tells whether an address has an account; the owner of an
existing account gets a notice by email instead of a second account.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.passwords import check_password_policy
from dashtam.core.tokens import new_opaque_token
from dashtam.core.types import utcnow
from dashtam.models.auth import EmailVerificationToken
from dashtam.services.auth import repository
from dashtam.services.auth.errors import InvalidVerificationToken
from dashtam.services.auth.security_events import SecurityEventType, record_event
from dashtam.services.auth.toolkit import (
    PURPOSE_VERIFICATION,
    AuthToolkit,
    ClientInfo,
    Mailer,
    normalize_email,
)


async def register(
    session: AsyncSession,
    tk: AuthToolkit,
    mailer: Mailer,
    *,
    email: str,
    password: str,
    name: str,
    now: datetime | None = None,
) -> None:
    """Create an unverified account and email a verification token (or notify the owner).

    Raises:
        WeakPassword: The password breaks the policy (checked before anything else).
    """
    email = normalize_email(email)
    check_password_policy(password, email=email)
    # Hashed before touching the database: the slow part never holds a transaction open.
    password_hash = await tk.passwords.hash(password)
    token = new_opaque_token()
    digest = tk.keyed.digest(token, purpose=PURPOSE_VERIFICATION)
    now = now or utcnow()
    user_id = await repository.insert_user_if_absent(
        session, email=email, name=name, password_hash=password_hash, now=now
    )
    if user_id is None:
        existing = await repository.find_contact_by_email(session, email=email)
        if existing is not None and existing.is_active:
            mailer.send_after_commit(
                session, to=existing.email, template="registration_attempt", name=existing.name
            )
        return
    await repository.add_single_use_token(
        session,
        EmailVerificationToken,
        user_id=user_id,
        token_hash=digest,
        now=now,
        expires_at=now + tk.verification_ttl,
    )
    mailer.send_after_commit(session, to=email, template="verification", name=name, token=token)


async def resend_verification(
    session: AsyncSession,
    tk: AuthToolkit,
    mailer: Mailer,
    *,
    email: str,
    now: datetime | None = None,
) -> None:
    """Email a fresh verification token to an unverified account; do nothing otherwise.

    The new token supersedes every older unused one.
    """
    email = normalize_email(email)
    token = new_opaque_token()
    digest = tk.keyed.digest(token, purpose=PURPOSE_VERIFICATION)
    now = now or utcnow()
    user = await repository.find_contact_by_email(session, email=email)
    if user is None or not user.is_active or user.email_verified_at is not None:
        return
    await repository.supersede_single_use_token(
        session,
        EmailVerificationToken,
        user_id=user.id,
        token_hash=digest,
        now=now,
        expires_at=now + tk.verification_ttl,
    )
    mailer.send_after_commit(
        session, to=user.email, template="verification", name=user.name, token=token
    )


async def verify_email(
    session: AsyncSession,
    tk: AuthToolkit,
    *,
    token: str,
    client: ClientInfo,
    now: datetime | None = None,
) -> None:
    """Spend a verification token and mark the address verified.

    Raises:
        InvalidVerificationToken: Unknown, expired, superseded or already used.
    """
    now = now or utcnow()
    digest = tk.keyed.digest(token, purpose=PURPOSE_VERIFICATION)
    user_id = await repository.claim_single_use_token(
        session, EmailVerificationToken, token_hash=digest, now=now
    )
    if user_id is None:
        raise InvalidVerificationToken()
    await repository.mark_email_verified(session, user_id=user_id, now=now)
    record_event(session, SecurityEventType.EMAIL_VERIFIED, user_id=user_id, client=client, now=now)
