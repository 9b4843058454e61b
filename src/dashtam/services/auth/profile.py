"""The caller's own account: read it (the authenticated hot path) and rename it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dashtam.services.auth import repository
from dashtam.services.auth.principal import PROFILE_FIELDS, UserProfile


async def load_live_profile(
    engine: AsyncEngine, *, user_id: uuid.UUID, session_id: uuid.UUID, now: datetime
) -> UserProfile | None:
    """The caller's profile, if their login session is live and their account active.

    One SELECT, on its own pooled connection (never the request's unit of work: no
    transaction stays open while the route runs), reads the profile and the session's state
    together, so a revoked session (logout, password change or reset, revocation) is refused
    on its very next request with the database as the only truth, and no cache round trip.

    Returns:
        The profile; None when the user is gone or disabled, or the session is missing,
        someone else's, revoked or expired.
    """
    values = await repository.read_principal(engine, user_id=user_id, session_id=session_id)
    if values is None or not values["is_active"]:
        return None
    live = (
        values["session_user_id"] == user_id
        and values["session_revoked_at"] is None
        and values["session_expires_at"] is not None
        and values["session_expires_at"] > now
    )
    if not live:
        return None
    return UserProfile.from_mapping({name: values[name] for name in PROFILE_FIELDS})


async def rename(session: AsyncSession, *, user_id: uuid.UUID, name: str) -> UserProfile | None:
    """Change the display name; returns the updated profile (None if the user vanished)."""
    row = await repository.update_name(session, user_id=user_id, name=name)
    return UserProfile.from_row(row) if row is not None else None
