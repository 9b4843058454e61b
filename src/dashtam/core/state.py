"""The resources one running application owns, created in the lifespan and closed after."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dashtam.core.config import Settings
from dashtam.core.database import SessionFactory, session_scope
from dashtam.core.kv import KeyValueStore

logger = logging.getLogger("dashtam.app")


@dataclass
class AppResources:
    """Everything `create_app()`'s lifespan builds; reached through `request.app.state`."""

    settings: Settings
    engine: AsyncEngine
    session_factory: SessionFactory
    kv: KeyValueStore
    extras: dict[str, Any] = field(default_factory=dict)
    #: Autocommit sessions for single-statement reads on the hot path (no BEGIN/COMMIT round
    #: trips); None on SQLite, where reads go through ordinary units of work.
    read_session_factory: SessionFactory | None = None
    #: Extra shutdown hooks (HTTP clients, brokers), run last-registered first before the stores.
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def add_closer(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run `closer` at shutdown, before the KV store and the engine are closed."""
        self.closers.append(closer)

    async def close(self) -> None:
        """Release connections in reverse order of creation."""
        await self.close_services()
        await self.kv.close()
        await self.engine.dispose()

    async def close_services(self) -> None:
        """Run the shutdown hooks only (the stores stay open: tests share them)."""
        for closer in reversed(self.closers):
            try:
                await closer()
            except Exception:
                # One failing hook must not leave the database and KV connections open.
                logger.exception("app.closer_failed")
        self.closers.clear()


@asynccontextmanager
async def statement_scope(resources: AppResources) -> AsyncIterator[AsyncSession]:
    """A session for statements that each stand alone (a read, a single-statement claim).

    On PostgreSQL every statement commits on its own (autocommit): no BEGIN and COMMIT round
    trips, and no transaction stays open between statements. Only use it where each statement
    is atomic by itself and nothing must roll back together. On SQLite (no autocommit factory)
    it is an ordinary unit of work, so it takes the write lock like any other: never open one
    while another unit of work is open in the same task.
    """
    factory = resources.read_session_factory
    if factory is None:
        async with session_scope(resources.session_factory) as session:
            yield session
        return
    async with factory() as session:
        yield session
