"""Who is calling: the verified access-token identity and the caller's profile."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from dashtam.core.tokens import AccessTokenClaims
from dashtam.services.auth.repository import AnyRow


@dataclass(frozen=True)
class AuthContext:
    """A verified access token whose session is live."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    claims: AccessTokenClaims


@dataclass(frozen=True)
class UserProfile:
    """The account fields a client may see (never the password hash)."""

    id: uuid.UUID
    email: str
    name: str
    email_verified_at: datetime | None
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None

    @property
    def email_verified(self) -> bool:
        """True once the email address has been verified."""
        return self.email_verified_at is not None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> UserProfile:
        """Build from the profile columns by name (`repository.read_profile`)."""
        return cls(**values)

    @classmethod
    def from_row(cls, row: AnyRow) -> UserProfile:
        """Build from a row with the profile columns."""
        return cls(
            id=row.id,
            email=row.email,
            name=row.name,
            email_verified_at=row.email_verified_at,
            is_active=row.is_active,
            created_at=row.created_at,
            last_login_at=row.last_login_at,
        )


#: The names of `UserProfile`'s fields, in order.
PROFILE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(UserProfile))
