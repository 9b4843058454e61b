"""The caller's own account: read it (the authenticated hot path) and rename it."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from dashtam.services.auth import repository
from dashtam.services.auth.principal import UserProfile


async def load_profile(connection: AsyncConnection, *, user_id: uuid.UUID) -> UserProfile | None:
    """One SELECT of the profile columns; None when the user no longer exists."""
    values = await repository.read_profile(connection, user_id=user_id)
    return UserProfile.from_mapping(values) if values is not None else None


async def rename(session: AsyncSession, *, user_id: uuid.UUID, name: str) -> UserProfile | None:
    """Change the display name; returns the updated profile (None if the user vanished)."""
    row = await repository.update_name(session, user_id=user_id, name=name)
    return UserProfile.from_row(row) if row is not None else None
