"""Test backends: the embedded ones by default, PostgreSQL/Redis when TEST_* URLs are set.

Each pytest-xdist worker gets its own database (and Redis database number), migrated once with
the real Alembic chain; tests are isolated by emptying every table and flushing Redis after each.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def worker_id() -> str:
    """`gw0`, `gw1`, … under xdist; `main` otherwise."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def worker_index() -> int:
    match = re.search(r"(\d+)$", worker_id())
    return int(match.group(1)) if match else 0


def worker_database_url(tmp_root: Path) -> str:
    """The database this worker uses."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        return f"sqlite+aiosqlite:///{(tmp_root / f'test-{worker_id()}.db').as_posix()}"
    url = make_url(base)
    name = f"{url.database or 'dashtam_test'}_{worker_id()}"
    return url.set(database=name).render_as_string(hide_password=False)


def worker_redis_url() -> str | None:
    """This worker's Redis database (base number + worker index), or None for in-process."""
    base = os.environ.get("TEST_REDIS_URL")
    if not base:
        return None
    match = re.match(r"^(redis://[^/]+)(?:/(\d+))?$", base)
    if not match:
        return base
    db = int(match.group(2) or 10) + worker_index()
    return f"{match.group(1)}/{db}"


async def recreate_postgres_database(url: str) -> None:
    """Drop and create the worker's database so every run starts from nothing."""
    parsed = make_url(url)
    admin = create_async_engine(
        parsed.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=None
    )
    name = parsed.database
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()


async def truncate_all(engine: AsyncEngine, tables: list[str]) -> None:
    """Empty every application table (not `alembic_version`)."""
    if not tables:
        return
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            joined = ", ".join(f'"{t}"' for t in tables)
            await conn.execute(text(f"TRUNCATE {joined} RESTART IDENTITY CASCADE"))
        else:
            await conn.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
            for table in tables:
                await conn.execute(text(f'DELETE FROM "{table}"'))
