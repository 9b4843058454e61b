"""Bare FastAPI app doing the essential work of `GET /api/v1/auth/me`: verify, then read a row.

It verifies the bearer token with Dashtam's own `AccessTokenCodec` (same HKDF-derived key,
algorithm, required claims, issuer and audience) and reads the caller's profile columns with one
raw driver query (asyncpg on PostgreSQL, aiosqlite on the embedded SQLite file), answering
Dashtam's `UserResponse`. No middleware, session-liveness check or rate limit: those are what
the ratio prices.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException
from sqlalchemy.engine import make_url

from dashtam.core.config import Settings
from dashtam.core.tokens import AccessTokenCodec, InvalidAccessToken, build_access_token_codec
from dashtam.schemas.auth import UserResponse

#: The columns Dashtam's `/me` selects (`repository.get_profile`).
PROFILE_SQL = (
    "SELECT id, email, name, email_verified_at, is_active, created_at, last_login_at "
    "FROM users WHERE id = {param}"
)

#: Reads one user's profile row as a mapping, or None.
FetchProfile = Callable[[uuid.UUID], Awaitable[dict[str, Any] | None]]


@asynccontextmanager
async def _postgres(url: str, pool_size: int, max_overflow: int) -> AsyncIterator[FetchProfile]:
    import asyncpg

    parsed = make_url(url)
    # Same pool bounds as Dashtam's engine (pool_size + max_overflow connections at most).
    pool = await asyncpg.create_pool(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
        min_size=pool_size,
        max_size=pool_size + max_overflow,
    )
    query = PROFILE_SQL.format(param="$1")

    async def fetch(user_id: uuid.UUID) -> dict[str, Any] | None:
        row = await pool.fetchrow(query, user_id)
        return dict(row) if row is not None else None

    try:
        yield fetch
    finally:
        await pool.close()


@asynccontextmanager
async def _sqlite(path: str) -> AsyncIterator[FetchProfile]:
    import aiosqlite

    connection = await aiosqlite.connect(path)
    connection.row_factory = aiosqlite.Row
    query = PROFILE_SQL.format(param="?")

    async def fetch(user_id: uuid.UUID) -> dict[str, Any] | None:
        async with connection.execute(query, (user_id.hex,)) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        values = dict(row)
        # SQLite keeps UTC timestamps as naive ISO text and booleans as integers.
        for column in ("email_verified_at", "created_at", "last_login_at"):
            if values[column] is not None:
                values[column] = datetime.fromisoformat(values[column]).replace(tzinfo=UTC)
        values["is_active"] = bool(values["is_active"])
        return values

    try:
        yield fetch
    finally:
        await connection.close()


def _profile_store(settings: Settings) -> Any:
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        return _sqlite(make_url(url).database or "")
    return _postgres(url, settings.db_pool_size, settings.db_max_overflow)


def create_app() -> FastAPI:
    """Build the reference app from the environment the harness passes (secrets, database)."""
    settings = Settings().ensure_secrets()
    codec: AccessTokenCodec = build_access_token_codec(settings)
    store: dict[str, FetchProfile] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with _profile_store(settings) as fetch:
            store["fetch"] = fetch
            yield

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/me", response_model=UserResponse)
    async def me(authorization: Annotated[str | None, Header()] = None) -> UserResponse:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "not authenticated")
        try:
            claims = codec.decode(token)
        except InvalidAccessToken:
            raise HTTPException(401, "invalid token") from None
        row = await store["fetch"](claims.user_id)
        if row is None or not row["is_active"]:
            raise HTTPException(401, "invalid token")
        return UserResponse(
            id=row["id"],
            email=row["email"],
            name=row["name"],
            email_verified=row["email_verified_at"] is not None,
            is_active=row["is_active"],
            created_at=row["created_at"],
            last_login_at=row["last_login_at"],
        )

    return app
