"""Institution connections: providers, their encrypted tokens, OAuth states and the audit trail.

Tokens are stored only as token-vault ciphertext bound to (table, column, row id); OAuth states
only as keyed hashes. Audit rows refer to their provider softly (no foreign key), so the trail
survives the provider's deletion.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, Index, UniqueConstraint
from sqlmodel import Field

from dashtam.core.types import UTCDateTime, utcnow
from dashtam.models.base import JSONType, Timestamps, UUIDPrimaryKey

ALIAS_MAX_LENGTH = 100
PROVIDER_KEY_MAX_LENGTH = 32
LAST_ERROR_MAX_LENGTH = 500
#: Hex HMAC-SHA256 digests are exactly 64 characters.
STATE_HASH_LENGTH = 64
IP_MAX_LENGTH = 45


class ProviderStatus(StrEnum):
    """Where a connection stands."""

    #: Created; no successful authorization yet.
    PENDING = "pending"
    #: Tokens stored and usable.
    ACTIVE = "active"
    #: The refresh token is dead (7-day wall, superseded, revoked): a new login is needed.
    REAUTH_REQUIRED = "reauth_required"
    #: The last operation failed for a reason other than authorization (see `last_error`).
    ERROR = "error"
    #: The account holder disconnected it; tokens destroyed.
    DISCONNECTED = "disconnected"


class Provider(UUIDPrimaryKey, Timestamps, table=True):
    """One user's connection to one institution."""

    __tablename__ = "providers"
    __table_args__ = (
        UniqueConstraint("user_id", "alias"),
        Index("ix_providers_user_id_created_at", "user_id", "created_at"),
    )

    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", nullable=False)
    provider_key: str = Field(max_length=PROVIDER_KEY_MAX_LENGTH, nullable=False)
    alias: str = Field(max_length=ALIAS_MAX_LENGTH, nullable=False)
    status: str = Field(default=ProviderStatus.PENDING.value, max_length=32, nullable=False)
    last_error: str | None = Field(default=None, max_length=LAST_ERROR_MAX_LENGTH)
    connected_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_synced_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_sync_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ProviderToken(UUIDPrimaryKey, table=True):
    """The institution tokens of one provider (at most one row per provider).

    Both token columns hold `TokenVault` ciphertext bound to this table, the column name and
    this row's id; `key_id` names the vault key both were written with (rotation skips rows
    already on the newest key).
    """

    __tablename__ = "provider_tokens"
    __table_args__ = (UniqueConstraint("provider_id"),)

    provider_id: uuid.UUID = Field(foreign_key="providers.id", ondelete="CASCADE", nullable=False)
    access_token_encrypted: str = Field(nullable=False)
    refresh_token_encrypted: str | None = Field(default=None)
    key_id: str = Field(max_length=32, nullable=False)
    token_type: str = Field(default="Bearer", max_length=32, nullable=False)
    scope: str | None = Field(default=None, max_length=255)
    access_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: Schwab: seven days from the interactive login, kept unchanged across refreshes.
    refresh_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    issued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    refreshed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    refresh_count: int = Field(default=0, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(
        default_factory=utcnow,
        sa_type=UTCDateTime,
        nullable=False,
        sa_column_kwargs={"onupdate": utcnow},
    )


class OAuthState(UUIDPrimaryKey, table=True):
    """One pending authorization: the keyed hash of its state, single use, 10 minutes.

    The plain state (`<provider id>.<256 random bits>`) is never stored; the PKCE verifier,
    when the provider supports PKCE, is vault ciphertext bound to this row.
    """

    __tablename__ = "oauth_states"
    __table_args__ = (
        Index("ix_oauth_states_state_hash", "state_hash", unique=True),
        Index("ix_oauth_states_provider_id", "provider_id"),
        Index("ix_oauth_states_expires_at", "expires_at"),
    )

    state_hash: str = Field(max_length=STATE_HASH_LENGTH, nullable=False)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", nullable=False)
    provider_id: uuid.UUID = Field(foreign_key="providers.id", ondelete="CASCADE", nullable=False)
    code_verifier_encrypted: str | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ProviderAuditLog(UUIDPrimaryKey, table=True):
    """Append-only record of one operation on a provider (never holds a secret).

    `provider_id` is deliberately not a foreign key: the trail must outlive the provider.
    """

    __tablename__ = "provider_audit_logs"
    __table_args__ = (
        Index("ix_provider_audit_logs_provider_id_created_at", "provider_id", "created_at"),
        Index("ix_provider_audit_logs_user_id_created_at", "user_id", "created_at"),
    )

    provider_id: uuid.UUID = Field(nullable=False)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", nullable=False)
    action: str = Field(max_length=64, nullable=False)
    outcome: str = Field(max_length=16, nullable=False)
    details: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONType, nullable=False)
    )
    ip_address: str | None = Field(default=None, max_length=IP_MAX_LENGTH)
    request_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


__all__ = [
    "OAuthState",
    "Provider",
    "ProviderAuditLog",
    "ProviderStatus",
    "ProviderToken",
]
