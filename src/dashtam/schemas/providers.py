"""Request and response bodies of the institutions-and-connections endpoints.

Request bodies forbid unknown fields (no mass assignment). No response ever carries a token,
an authorization code or a stored state: only the state issued by `POST …/authorization`,
which the account holder's browser needs anyway.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from dashtam.models.provider import ALIAS_MAX_LENGTH, ProviderStatus


def _clean_alias(value: str) -> str:
    cleaned = " ".join(value.split())
    if not cleaned:
        raise ValueError("alias must not be blank")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in cleaned):
        raise ValueError("alias must not contain control characters")
    return cleaned


Alias = Annotated[
    str,
    Field(min_length=1, max_length=ALIAS_MAX_LENGTH, examples=["Schwab brokerage"]),
    AfterValidator(_clean_alias),
]


class ProviderType(BaseModel):
    """An institution this server can connect to."""

    key: str = Field(examples=["schwab"])
    name: str = Field(examples=["Charles Schwab"])
    auth_type: str = Field(examples=["oauth2"])
    configured: bool = Field(description="Whether the server has credentials for it.")
    capabilities: list[str] = Field(examples=[["accounts", "refresh_token", "transactions"]])


class ProviderTypeList(BaseModel):
    """Every institution offered (small and bounded: never paginated)."""

    items: list[ProviderType]
    next_cursor: str | None = None
    has_more: bool = False


class ProviderCreate(BaseModel):
    """`POST /providers`."""

    model_config = ConfigDict(extra="forbid")

    provider_key: str = Field(
        min_length=1, max_length=32, pattern=r"^[a-z0-9_-]+$", examples=["schwab"]
    )
    alias: Alias


class ProviderUpdate(BaseModel):
    """`PATCH /providers/{id}`."""

    model_config = ConfigDict(extra="forbid")

    alias: Alias


class ProviderRead(BaseModel):
    """One connection to an institution."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    provider_key: str
    alias: str
    status: ProviderStatus
    last_error: str | None = None
    connected_at: datetime | None = None
    last_synced_at: datetime | None = None
    next_sync_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class ProviderList(BaseModel):
    """The caller's providers (a handful: returned whole)."""

    items: list[ProviderRead]
    next_cursor: str | None = None
    has_more: bool = False


class AuthorizationStarted(BaseModel):
    """Open `authorization_url` in the account holder's browser before `expires_at`."""

    authorization_url: str
    state: str = Field(description="Single use; echoed back by the institution.")
    expires_at: datetime


class AuthorizationStatus(BaseModel):
    """Where the provider's authorization stands (no token values, ever)."""

    model_config = ConfigDict(from_attributes=True)

    status: ProviderStatus
    connected_at: datetime | None = None
    access_expires_at: datetime | None = None
    refresh_expires_at: datetime | None = Field(
        default=None, description="After this a new login is needed (Schwab: 7 days)."
    )
    scope: str | None = None
    last_refreshed_at: datetime | None = None
    refresh_count: int = 0


class AuthorizationCompleted(BaseModel):
    """The callback connected the provider."""

    provider_id: uuid.UUID
    status: ProviderStatus
    message: str


class AuditLogRead(BaseModel):
    """One audit-trail entry."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    action: str
    outcome: str
    details: dict[str, Any]
    ip_address: str | None = None
    request_id: str | None = None
    created_at: datetime


class AuditLogList(BaseModel):
    """A page of the audit trail, newest first."""

    items: list[AuditLogRead]
    next_cursor: str | None = None
    has_more: bool = False
