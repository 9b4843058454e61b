"""Authentication state: login sessions, refresh tokens, single-use email tokens, security events.

Opaque tokens are never stored: only their keyed HMAC digests, under a unique index, so a
lookup is one index probe whatever the table size and a database leak reveals nothing usable.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index
from sqlmodel import Field

from dashtam.core.types import UTCDateTime, utcnow
from dashtam.models.base import JSONType, UUIDPrimaryKey

#: Hex HMAC-SHA256 digests are exactly 64 characters.
TOKEN_HASH_LENGTH = 64
USER_AGENT_MAX_LENGTH = 512
IP_MAX_LENGTH = 45


class AuthSession(UUIDPrimaryKey, table=True):
    """One login: a family of rotated refresh tokens with an absolute expiry.

    Revoking the session (logout, reuse of a spent refresh token, password change) ends every
    refresh token of the family and, through the per-request session check, every access token.
    """

    __tablename__ = "auth_sessions"
    __table_args__ = (Index("ix_auth_sessions_user_id_created_at", "user_id", "created_at"),)

    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", nullable=False)
    user_agent: str | None = Field(default=None, max_length=USER_AGENT_MAX_LENGTH)
    ip_address: str | None = Field(default=None, max_length=IP_MAX_LENGTH)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    last_used_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoke_reason: str | None = Field(default=None, max_length=32)


class RefreshToken(UUIDPrimaryKey, table=True):
    """One refresh token of a session; `used_at` is set when it is exchanged (single use)."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        Index("ix_refresh_tokens_token_hash", "token_hash", unique=True),
        Index("ix_refresh_tokens_session_id", "session_id"),
    )

    session_id: uuid.UUID = Field(
        foreign_key="auth_sessions.id", ondelete="CASCADE", nullable=False
    )
    token_hash: str = Field(max_length=TOKEN_HASH_LENGTH, nullable=False)
    issued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class EmailVerificationToken(UUIDPrimaryKey, table=True):
    """A single-use token proving control of the account's mailbox."""

    __tablename__ = "email_verification_tokens"
    __table_args__ = (
        Index("ix_email_verification_tokens_token_hash", "token_hash", unique=True),
        Index("ix_email_verification_tokens_user_id", "user_id"),
    )

    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", nullable=False)
    token_hash: str = Field(max_length=TOKEN_HASH_LENGTH, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PasswordResetToken(UUIDPrimaryKey, table=True):
    """A single-use password reset token; a newer request supersedes older unused ones."""

    __tablename__ = "password_reset_tokens"
    __table_args__ = (
        Index("ix_password_reset_tokens_token_hash", "token_hash", unique=True),
        Index("ix_password_reset_tokens_user_id", "user_id"),
    )

    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", nullable=False)
    token_hash: str = Field(max_length=TOKEN_HASH_LENGTH, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SecurityEvent(UUIDPrimaryKey, table=True):
    """Append-only record of security-relevant events (never holds a secret).

    `user_id` is nullable (failed logins for unknown emails) and set to NULL if the user row is
    ever deleted, so the trail itself survives.
    """

    __tablename__ = "security_events"
    __table_args__ = (
        Index("ix_security_events_user_id_created_at", "user_id", "created_at"),
        Index("ix_security_events_event_type_created_at", "event_type", "created_at"),
    )

    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    event_type: str = Field(max_length=64, nullable=False)
    ip_address: str | None = Field(default=None, max_length=IP_MAX_LENGTH)
    user_agent: str | None = Field(default=None, max_length=USER_AGENT_MAX_LENGTH)
    request_id: str | None = Field(default=None, max_length=128)
    details: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONType, nullable=False)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


__all__ = [
    "AuthSession",
    "EmailVerificationToken",
    "PasswordResetToken",
    "RefreshToken",
    "SecurityEvent",
]
