"""Seed benchmark data straight into a Dashtam database through Dashtam's own code.

Users are inserted with one precomputed argon2id hash (hashing per user would cost ~100 ms
each), sessions and refresh tokens through `dashtam.services.auth.repository`, keyed with the
run's `SECRET_KEY`, so the API accepts them exactly like tokens it issued itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from dashtam.core.config import Settings
from dashtam.core.database import create_engine, create_session_factory, session_scope
from dashtam.core.tokens import KeyedHasher, new_opaque_token
from dashtam.core.types import utcnow
from dashtam.models.user import User
from dashtam.services.auth import repository
from dashtam.services.auth.toolkit import PURPOSE_REFRESH

#: Passes Dashtam's password policy (length, not common, no email local part).
BENCH_USER_PASSWORD = "cobalt-meadow-41-harbour"
#: How long seeded sessions and refresh tokens stay valid (longer than any run).
SEED_LIFETIME = timedelta(days=7)


@dataclass(frozen=True)
class SeededUser:
    """A verified, active user the API can log in."""

    id: uuid.UUID
    email: str


def password_hash(password: str = BENCH_USER_PASSWORD) -> str:
    """An argon2id hash with pwdlib's defaults, the parameters Dashtam hashes with."""
    from pwdlib import PasswordHash

    return PasswordHash.recommended().hash(password)


def _settings(database_url: str) -> Settings:
    return Settings(environment="test", database_url=database_url, log_level="WARNING")


async def create_users(
    database_url: str,
    env: Mapping[str, str],
    *,
    count: int,
    prefix: str = "bench",
    password: str = BENCH_USER_PASSWORD,
) -> list[SeededUser]:
    """Insert `count` verified, active users sharing one password.

    Args:
        database_url: The database the API under test uses.
        env: The API's environment (only its database settings matter here).
        count: How many users.
        prefix: Start of every email address (`<prefix>-<n>@example.com`).
        password: Their password (hashed once).

    Returns:
        The users, in creation order.
    """
    engine = create_engine(database_url, _settings(database_url))
    hashed = password_hash(password)
    now = utcnow()
    users = [
        User(
            email=f"{prefix}-{n}@example.com",
            name=f"Bench {n}",
            password_hash=hashed,
            email_verified_at=now,
            is_active=True,
            created_at=now,
            updated_at=now,
        )
        for n in range(count)
    ]
    try:
        async with session_scope(create_session_factory(engine)) as session:
            session.add_all(users)
            await session.flush()
            return [SeededUser(id=user.id, email=user.email) for user in users]
    finally:
        await engine.dispose()


async def seed_refresh_tokens(
    database_url: str,
    env: Mapping[str, str],
    *,
    user_id: uuid.UUID,
    count: int,
    per_session: int = 1,
) -> list[str]:
    """Create live refresh tokens for one user, `per_session` of them in each login session.

    A single token per session is what a real client holds; several per session keep large
    background populations cheap to create. Either way every token is live: unused, unexpired,
    its session unrevoked.

    Args:
        database_url: The database the API under test uses.
        env: The API's environment: `SECRET_KEY` keys the token hashes.
        user_id: The owner.
        count: How many tokens.
        per_session: Tokens per session (sessions are created as needed).

    Returns:
        The tokens in plain text (only their keyed hashes are stored).
    """
    if per_session < 1:
        raise ValueError("per_session must be at least 1")
    hasher = KeyedHasher(env["SECRET_KEY"].encode())
    engine = create_engine(database_url, _settings(database_url))
    now = utcnow()
    expires_at = now + SEED_LIFETIME
    tokens: list[str] = []
    try:
        async with session_scope(create_session_factory(engine)) as session:
            session_id: uuid.UUID | None = None
            for n in range(count):
                if n % per_session == 0:
                    session_id = await repository.add_session(
                        session,
                        user_id=user_id,
                        now=now,
                        expires_at=expires_at,
                        ip_address="127.0.0.1",
                        user_agent="bench-seed",
                    )
                assert session_id is not None
                token = new_opaque_token()
                await repository.add_refresh_token(
                    session,
                    session_id=session_id,
                    token_hash=hasher.digest(token, purpose=PURPOSE_REFRESH),
                    now=now,
                    expires_at=expires_at,
                )
                tokens.append(token)
            await session.flush()
    finally:
        await engine.dispose()
    return tokens
