"""The Alembic chain: it applies, reverts and re-applies cleanly, and matches the models.

Runs on the current test backend (SQLite file, or PostgreSQL with `TEST_DATABASE_URL`) in a
scratch database of its own, never the shared per-worker one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel

import dashtam.models  # noqa: F401  (every table on the metadata)
from dashtam.core.migrations import alembic_config, downgrade, upgrade_to_head
from tests.support.backends import recreate_postgres_database, worker_database_url


@pytest.fixture
async def scratch_url(tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of the current backend, dropped afterwards."""
    base = worker_database_url(tmp_path)
    if base.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{(tmp_path / 'migrations.db').as_posix()}"
        return
    parsed = make_url(base)
    url = parsed.set(database=f"{parsed.database}_migrations").render_as_string(hide_password=False)
    await recreate_postgres_database(url)
    yield url
    admin = create_async_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(
                f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'
            )
    finally:
        await admin.dispose()


async def _inspect(url: str, fn: Any) -> Any:
    engine: AsyncEngine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _differences(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn,
        opts={
            "compare_type": True,
            "compare_server_default": False,
            "render_as_batch": conn.dialect.name == "sqlite",
        },
    )
    return list(compare_metadata(context, SQLModel.metadata))


class TestMigrationChain:
    async def test_is_one_linear_chain_starting_at_0001_auth(self) -> None:
        script = ScriptDirectory.from_config(alembic_config("sqlite://"))
        heads = script.get_heads()
        revisions = list(script.walk_revisions())

        assert len(heads) == 1
        assert revisions[-1].revision == "0001_auth"
        assert revisions[-1].down_revision is None

    async def test_upgrade_downgrade_upgrade(self, scratch_url: str) -> None:
        model_tables = {table.name for table in SQLModel.metadata.sorted_tables}

        await asyncio.to_thread(upgrade_to_head, scratch_url)
        after_upgrade = await _inspect(scratch_url, _tables)
        await asyncio.to_thread(downgrade, scratch_url, "base")
        after_downgrade = await _inspect(scratch_url, _tables)
        await asyncio.to_thread(upgrade_to_head, scratch_url)
        after_second_upgrade = await _inspect(scratch_url, _tables)

        assert model_tables <= after_upgrade
        assert after_downgrade <= {"alembic_version"}
        assert after_second_upgrade == after_upgrade

    async def test_models_match_migrations(self, scratch_url: str) -> None:
        await asyncio.to_thread(upgrade_to_head, scratch_url)

        differences = await _inspect(scratch_url, _differences)

        assert differences == [], f"models and migrations differ: {differences}"
