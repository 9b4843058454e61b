"""Shared model plumbing: the metadata naming convention and the common mixins.

The naming convention must be set before any table is defined: SQLite batch migrations need
every constraint to have a deterministic name.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from dashtam.core.types import UTCDateTime, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION

#: JSON column: JSONB on PostgreSQL, JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class UUIDPrimaryKey(SQLModel):
    """A random UUID primary key (never guessable, never sequential)."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)


class Timestamps(SQLModel):
    """Timezone-aware `created_at` / `updated_at`, maintained by the ORM."""

    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(
        default_factory=utcnow,
        sa_type=UTCDateTime,
        nullable=False,
        sa_column_kwargs={"onupdate": utcnow},
    )
