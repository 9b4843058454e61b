"""`asyncpg_connection`: the hot-path driver connection goes back to the pool after a read,
and a connection that failed mid-statement is discarded and reported as SQLAlchemy's
`OperationalError` (which the API answers with 503)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import Integer, bindparam, literal, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

from dashtam.core.database import DriverStatement, asyncpg_connection
from dashtam.core.types import UTCDateTime
from dashtam.models.provider import ProviderToken


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


class TestDriverStatement:
    """A Core statement compiled once for the driver sends what SQLAlchemy would send."""

    def test_named_parameters_in_order_and_the_statements_own_literals(self) -> None:
        statement = select(
            literal("fixed").label("word"),
            bindparam("b", type_=Integer) + bindparam("a", type_=Integer),
        )
        compiled = DriverStatement.compile(statement)

        assert "$1" in compiled.sql and "%(" not in compiled.sql
        assert [n for n in compiled.names if n in {"a", "b"}] == ["b", "a"]
        arguments = compiled.arguments({"a": 1, "b": 2})
        assert arguments[compiled.names.index("b")] == 2
        assert "fixed" in arguments

    def test_an_open_parameter_without_a_value_is_an_error(self) -> None:
        compiled = DriverStatement.compile(select(bindparam("a", type_=Integer)))
        with pytest.raises(KeyError):
            compiled.arguments({})

    def test_column_defaults_must_be_given_not_compiled_in(self) -> None:
        # `updated_at` has an `onupdate` default that only SQLAlchemy's execution fills in.
        statement = (
            update(ProviderToken)
            .where(ProviderToken.id == bindparam("row_id"))  # type: ignore[arg-type]
            .values(refresh_count=bindparam("count"))
        )
        with pytest.raises(ValueError, match="updated_at"):
            DriverStatement.compile(statement)
        given = statement.values(updated_at=bindparam("now"))
        assert DriverStatement.compile(given).names

    async def test_types_are_processed_like_sqlalchemy_does(self, pg_engine: AsyncEngine) -> None:
        statement = select(
            bindparam("doc", type_=JSONB).label("doc"),
            bindparam("at", type_=UTCDateTime).label("at"),
        )
        compiled = DriverStatement.compile(statement)
        moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        async with asyncpg_connection(pg_engine) as driver:
            row = await driver.fetchrow(
                compiled.sql, *compiled.arguments({"doc": {"a": [1, "x"]}, "at": moment})
            )
        assert row is not None
        # The column type encoded the document (the driver alone would refuse a dict).
        assert row["doc"] == {"a": [1, "x"]}
        assert row["at"] == moment
