"""Bare FastAPI app doing the essential work of `GET /api/v1/transactions?status=…&limit=…`.

It verifies the bearer token with Dashtam's own `AccessTokenCodec`, runs the statement Dashtam's
`queries.list_transactions` builds for "the caller's live transactions with one status, newest
first" (built from the same Core columns and compiled for asyncpg, see `list_sql`) through a raw
asyncpg pool, and answers the same `TransactionPage` shape (rows validated into `TransactionOut`,
`next_cursor` signed with Dashtam's `CursorCodec`). No middleware, session-liveness check, rate
limit or ORM session: those are what the ratio prices. PostgreSQL only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Query
from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.engine import make_url

from dashtam.core.config import Settings
from dashtam.core.tokens import AccessTokenCodec, InvalidAccessToken, build_access_token_codec
from dashtam.models.financial import TransactionStatus
from dashtam.schemas.financial import TransactionOut, TransactionPage
from dashtam.services.financial import queries
from dashtam.services.financial.cursors import CursorCodec

#: The parameters of `list_sql`'s statement, in positional order.
LIST_PARAMS = ("user_id", "status", "limit")


def list_sql() -> str:
    """Dashtam's transactions-list statement (user scope, live rows, one status, newest first).

    Built from `queries`' own column list and table exactly as `list_transactions` builds it
    without an account filter, then compiled with the asyncpg dialect (`$1`-style placeholders
    in `LIST_PARAMS` order).
    """
    t = queries._transactions.c
    stmt = (
        select(*queries._TX_COLUMNS)
        .where(t.user_id == bindparam("user_id"), t.removed_at.is_(None))
        .where(t.status == bindparam("status"))
        .order_by(t.posted_at.desc(), t.id.desc())
        .limit(bindparam("limit"))
    )
    compiled = stmt.compile(dialect=asyncpg_dialect.dialect())  # type: ignore[no-untyped-call]
    order = tuple(compiled.positiontup or ())
    if order != LIST_PARAMS:
        raise RuntimeError(f"unexpected parameter order {order}")
    return str(compiled)


def create_app() -> FastAPI:
    """Build the reference app from the environment the harness passes (secrets, database)."""
    import asyncpg

    settings = Settings().ensure_secrets()
    codec: AccessTokenCodec = build_access_token_codec(settings)
    cursors = CursorCodec(settings.secret_key_bytes)
    sql = list_sql()
    store: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        parsed = make_url(settings.effective_database_url)
        # Same pool bounds as Dashtam's engine (pool_size + max_overflow connections at most).
        pool = await asyncpg.create_pool(
            host=parsed.host or "127.0.0.1",
            port=parsed.port or 5432,
            user=parsed.username,
            password=parsed.password,
            database=parsed.database,
            min_size=settings.db_pool_size,
            max_size=settings.db_pool_size + settings.db_max_overflow,
        )
        store["pool"] = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/transactions", response_model=TransactionPage)
    async def transactions(
        status: Annotated[TransactionStatus, Query()],
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        authorization: Annotated[str | None, Header()] = None,
    ) -> TransactionPage:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "not authenticated")
        try:
            claims = codec.decode(token)
        except InvalidAccessToken:
            raise HTTPException(401, "invalid token") from None
        rows = await store["pool"].fetch(sql, claims.user_id, status.value, limit + 1)
        has_more = len(rows) > limit
        items = [TransactionOut.model_validate(dict(row)) for row in rows[:limit]]
        next_cursor = None
        if has_more:
            last = items[-1]
            next_cursor = cursors.encode(
                queries.TRANSACTIONS_CURSOR, last.posted_at.isoformat(), str(last.id)
            )
        return TransactionPage(items=items, next_cursor=next_cursor, has_more=has_more)

    return app
