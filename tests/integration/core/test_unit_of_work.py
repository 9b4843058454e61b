"""The unit of work: commit on success, roll back on error, hooks only after commit; and
concurrent read-then-write never loses updates (SQLite's BEGIN IMMEDIATE, PostgreSQL's locks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from dashtam.core.database import after_commit, create_session_factory, session_scope

_metadata = MetaData()
_counter = Table(
    "uow_counter",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("value", Integer, nullable=False),
)


@pytest.fixture
async def counter(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    async with engine.begin() as conn:
        await conn.run_sync(_metadata.create_all)
        await conn.execute(insert(_counter).values(id=1, value=0))
    yield engine
    async with engine.begin() as conn:
        await conn.run_sync(_metadata.drop_all)


async def _value(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(_counter.c.value))).scalar_one())


class TestSessionScope:
    async def test_commits_on_success_and_runs_hooks_after(self, counter: AsyncEngine) -> None:
        factory = create_session_factory(counter)
        seen: list[int] = []
        async with session_scope(factory) as session:
            await session.execute(update(_counter).values(value=5))
            after_commit(session, lambda: seen.append(1))
            assert seen == []
        assert seen == [1]
        assert await _value(counter) == 5

    async def test_rolls_back_and_drops_hooks_on_error(self, counter: AsyncEngine) -> None:
        factory = create_session_factory(counter)
        seen: list[int] = []

        async def failing_unit_of_work() -> None:
            async with session_scope(factory) as session:
                await session.execute(update(_counter).values(value=7))
                after_commit(session, lambda: seen.append(1))
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await failing_unit_of_work()
        assert seen == []
        assert await _value(counter) == 0

    async def test_async_hooks_are_awaited(self, counter: AsyncEngine) -> None:
        factory = create_session_factory(counter)
        seen: list[str] = []

        async def hook() -> None:
            seen.append("sent")

        async with session_scope(factory) as session:
            after_commit(session, hook)
        assert seen == ["sent"]


class TestConcurrentReadThenWrite:
    async def test_no_lost_updates_under_contention(self, counter: AsyncEngine) -> None:
        factory = create_session_factory(counter)
        is_pg = counter.dialect.name == "postgresql"

        async def increment() -> None:
            async with session_scope(factory) as session:
                query = select(_counter.c.value).where(_counter.c.id == 1)
                if is_pg:
                    query = query.with_for_update()
                current = (await session.execute(query)).scalar_one()
                await asyncio.sleep(0)  # let the others interleave
                await session.execute(update(_counter).values(value=current + 1))

        await asyncio.gather(*(increment() for _ in range(30)))
        assert await _value(counter) == 30
