"""Notices the scheduler sent about a connection, so each is sent once per episode.

An episode is one interactive login (the tokens' `issued_at`): a new login starts a new
episode, and its 24-hour warning and "sign in again" notice may be sent again.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import UniqueConstraint
from sqlmodel import Field

from dashtam.core.types import UTCDateTime, utcnow
from dashtam.models.base import UUIDPrimaryKey


class NoticeKind(StrEnum):
    """What the account holder was told."""

    #: The refresh token dies within the warning period (Schwab: the 7-day wall).
    REAUTH_SOON = "reauth_soon"
    #: The connection needs a new login now.
    REAUTH_REQUIRED = "reauth_required"


class ProviderNotice(UUIDPrimaryKey, table=True):
    """One notice sent for one connection in one episode (unique: sent at most once)."""

    __tablename__ = "provider_notices"
    __table_args__ = (UniqueConstraint("provider_id", "kind", "episode"),)

    provider_id: uuid.UUID = Field(foreign_key="providers.id", ondelete="CASCADE", nullable=False)
    kind: str = Field(max_length=32, nullable=False)
    #: ISO timestamp of the login the notice is about.
    episode: str = Field(max_length=64, nullable=False)
    sent_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
