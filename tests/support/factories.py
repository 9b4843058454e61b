"""Small async builders for tests: users, logged-in sessions, single-use tokens.

Argon2 costs ~100 ms per hash, so users are created with a precomputed hash of
`KNOWN_PASSWORD` instead of hashing in every test.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.config import Settings
from dashtam.core.database import session_scope
from dashtam.core.kv import KeyValueStore
from dashtam.core.state import AppResources
from dashtam.core.tokens import new_opaque_token
from dashtam.core.types import utcnow
from dashtam.models.auth import PasswordResetToken
from dashtam.models.user import User
from dashtam.services.auth.sessions import TokenPair, start_session
from dashtam.services.auth.toolkit import (
    PURPOSE_RESET,
    AuthToolkit,
    ClientInfo,
    build_auth_toolkit,
)

#: Passes the password policy for any `@example.com` address the builders make.
KNOWN_PASSWORD = "violet-harbor-73-lantern"
#: argon2id (pwdlib defaults) of KNOWN_PASSWORD.
KNOWN_PASSWORD_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$XU4VXKR1eWk226xtSrfeGQ$"
    "nvWOJLHciKA3731EgBAgVcfYdeELH2SEgckj9FXthp8"
)
#: A legacy bcrypt (cost 4) hash of KNOWN_PASSWORD, as an older system would have stored it.
KNOWN_PASSWORD_BCRYPT = "$2b$04$PS7/Xz89mPARhdOMs56NfeXyXiXfTETjBux4u0qKazvhmTCk3cCqm"
#: Another policy-compliant password, for changes and resets.
NEW_PASSWORD = "amber-quarry-58-compass"


def toolkit_for(settings: Settings, kv: KeyValueStore) -> AuthToolkit:
    """A toolkit over the same secret and KV store as the app under test."""
    return build_auth_toolkit(settings, kv)


async def create_user(session: AsyncSession, **overrides: Any) -> User:
    """Insert a verified, active user whose password is `KNOWN_PASSWORD`."""
    now = utcnow()
    values: dict[str, Any] = {
        "email": f"user-{uuid.uuid4().hex[:10]}@example.com",
        "name": "Test User",
        "password_hash": KNOWN_PASSWORD_HASH,
        "email_verified_at": now,
        "is_active": True,
        "created_at": now,
        "updated_at": now,
    }
    values.update(overrides)
    user = User(**values)
    session.add(user)
    await session.flush()
    return user


@dataclass(frozen=True)
class LoggedIn:
    """A user with a live session and its tokens."""

    user: User
    tokens: TokenPair

    @property
    def headers(self) -> dict[str, str]:
        """`Authorization` header for the access token."""
        return {"Authorization": f"Bearer {self.tokens.access_token}"}


async def create_login(
    session: AsyncSession,
    toolkit: AuthToolkit,
    user: User | None = None,
    *,
    now: datetime | None = None,
    user_agent: str = "pytest",
    ip_address: str = "198.51.100.7",
) -> LoggedIn:
    """Open a session for `user` (a new one when omitted) without spending a password hash."""
    user = user or await create_user(session)
    tokens = await start_session(
        session,
        toolkit,
        user_id=user.id,
        client=ClientInfo(ip_address=ip_address, user_agent=user_agent),
        now=now or utcnow(),
    )
    await session.flush()
    return LoggedIn(user=user, tokens=tokens)


async def create_reset_token(
    session: AsyncSession,
    toolkit: AuthToolkit,
    user: User,
    *,
    expires_in: timedelta = timedelta(hours=1),
    used: bool = False,
) -> str:
    """Store a password reset token for `user` and return the plain token."""
    token = new_opaque_token()
    now = utcnow()
    session.add(
        PasswordResetToken(
            user_id=user.id,
            token_hash=toolkit.keyed.digest(token, purpose=PURPOSE_RESET),
            created_at=now - timedelta(minutes=1),
            expires_at=now + expires_in,
            used_at=now if used else None,
        )
    )
    await session.flush()
    return token


async def seed_user(resources: AppResources, **overrides: Any) -> User:
    """`create_user` in its own committed unit of work (for tests that then call the API)."""
    async with session_scope(resources.session_factory) as session:
        return await create_user(session, **overrides)


async def seed_login(resources: AppResources, user: User | None = None, **kwargs: Any) -> LoggedIn:
    """`create_login` in its own committed unit of work."""
    toolkit = toolkit_for(resources.settings, resources.kv)
    async with session_scope(resources.session_factory) as session:
        return await create_login(session, toolkit, user, **kwargs)


async def seed_reset_token(resources: AppResources, user: User, **kwargs: Any) -> str:
    """`create_reset_token` in its own committed unit of work."""
    toolkit = toolkit_for(resources.settings, resources.kv)
    async with session_scope(resources.session_factory) as session:
        return await create_reset_token(session, toolkit, user, **kwargs)
