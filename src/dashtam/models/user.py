"""The `users` table: one row per account holder (login identity and account state)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field

from dashtam.core.types import UTCDateTime
from dashtam.models.base import Timestamps, UUIDPrimaryKey

#: RFC 5321 caps a forward path at 254 characters; 320 leaves room for odd but valid input.
EMAIL_MAX_LENGTH = 320
NAME_MAX_LENGTH = 100


class User(UUIDPrimaryKey, Timestamps, table=True):
    """An account holder.

    `email` is stored normalised (trimmed, lower-cased) so the unique index makes it
    case-insensitive on both backends without functional indexes. `failed_login_count` and
    `locked_until` back the login lockout while the key/value store is unreachable.
    """

    __tablename__ = "users"
    __table_args__ = (Index("ix_users_email", "email", unique=True),)

    email: str = Field(max_length=EMAIL_MAX_LENGTH, nullable=False)
    name: str = Field(max_length=NAME_MAX_LENGTH, nullable=False)
    password_hash: str = Field(max_length=255, nullable=False)
    email_verified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    is_active: bool = Field(default=True, nullable=False)
    failed_login_count: int = Field(default=0, nullable=False)
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_login_ip: str | None = Field(default=None, max_length=45)

    def __repr__(self) -> str:
        # Never print the password hash, even in a debugger or a traceback.
        return f"User(id={self.id!s}, email={self.email!r})"
