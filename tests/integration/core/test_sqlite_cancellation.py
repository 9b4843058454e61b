"""A task cancelled in the middle of a SQLite statement must not keep the write lock.

The cancelled connection is invalidated and closed; Python's sqlite3 would keep it alive as a
zombie, transaction and write lock included, while the interrupted cursor is still referenced.
Found as a flaky sync test: a sync killed mid-run left its token read holding the lock, and the
next writer failed with "database is locked" five seconds later.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from dashtam.core.config import Settings
from dashtam.core.database import create_engine

_STEP_SECONDS = 0.3


def _can_take_write_lock(path: Path) -> bool:
    """Whether another connection gets `BEGIN IMMEDIATE` within half a second."""
    probe = sqlite3.connect(path, timeout=0.5, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()


@pytest.fixture
def no_cycle_collection() -> Iterator[None]:
    """Keep the cancelled traceback (and its cursor) alive, as a busy process would."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


async def test_cancelled_statement_releases_the_write_lock(
    tmp_path: Path, settings: Settings, no_cycle_collection: None
) -> None:
    path = tmp_path / "cancel.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path.as_posix()}", settings)
    stepping = threading.Event()

    def slow(value: int) -> int:
        stepping.set()
        time.sleep(_STEP_SECONDS)  # runs in aiosqlite's thread: the statement is mid-step
        return value

    @event.listens_for(engine.sync_engine, "connect")
    def _add_slow(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.run_async(lambda conn: conn.create_function("slow", 1, slow))

    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1), (2), (3)"))

        async def read() -> None:
            async with engine.connect() as conn:  # BEGIN IMMEDIATE, then the slow SELECT
                await conn.execute(text("SELECT slow(x) FROM t"))

        task = asyncio.create_task(read())
        assert await asyncio.to_thread(stepping.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The interrupted statement's step finishes in the driver's thread; after that the
        # lock must be free for the next writer, without waiting for the garbage collector.
        await asyncio.sleep(_STEP_SECONDS)
        assert await asyncio.to_thread(_can_take_write_lock, path)
    finally:
        await engine.dispose()
