"""`asyncpg_connection`: the hot-path driver connection goes back to the pool after a read,
and a connection that failed mid-statement is discarded and reported as SQLAlchemy's
`OperationalError` (which the API answers with 503)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from dashtam.core.database import asyncpg_connection


@pytest.fixture
def pg_engine(engine: AsyncEngine) -> AsyncEngine:
    if engine.dialect.driver != "asyncpg":
        pytest.skip("PostgreSQL only (set TEST_DATABASE_URL)")
    return engine


def checked_out(engine: AsyncEngine) -> int:
    return int(engine.pool.checkedout())  # type: ignore[attr-defined]


class TestAsyncpgConnection:
    async def test_reads_outside_a_transaction_and_returns_the_connection(
        self, pg_engine: AsyncEngine
    ) -> None:
        before = checked_out(pg_engine)
        async with asyncpg_connection(pg_engine) as driver:
            assert checked_out(pg_engine) == before + 1
            assert not driver.is_in_transaction()
            assert await driver.fetchval("SELECT 41 + 1") == 42

        assert checked_out(pg_engine) == before

    async def test_a_failed_connection_is_discarded_and_translated(
        self, pg_engine: AsyncEngine
    ) -> None:
        before = checked_out(pg_engine)
        seen: list[asyncpg.Connection] = []

        async def read_on_a_dying_connection() -> None:
            async with asyncpg_connection(pg_engine) as driver:
                seen.append(driver)
                raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")

        with pytest.raises(sa_exc.OperationalError):
            await read_on_a_dying_connection()

        assert seen[0].is_closed()
        assert checked_out(pg_engine) == before

    async def test_a_statement_error_is_not_a_dependency_outage(
        self, pg_engine: AsyncEngine
    ) -> None:
        async def read_a_missing_table() -> None:
            async with asyncpg_connection(pg_engine) as driver:
                await driver.fetchrow("SELECT * FROM no_such_table")

        with pytest.raises(asyncpg.exceptions.UndefinedTableError):
            await read_a_missing_table()

        async with asyncpg_connection(pg_engine) as driver:
            assert await driver.fetchval("SELECT 1") == 1
