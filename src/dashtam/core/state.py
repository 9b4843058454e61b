"""The resources one running application owns, created in the lifespan and closed after."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dashtam.core.config import Settings
from dashtam.core.database import SessionFactory
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
    #: The engine in autocommit mode (same pool), for `read_connection`; None on SQLite.
    read_engine: AsyncEngine | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.engine.dialect.name != "sqlite":
            self.read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection for one-statement reads on the hottest paths.

        PostgreSQL: autocommit, so no BEGIN/COMMIT round trips, and no ORM session to build.
        SQLite: an ordinary short transaction (reads there are local and cheap).
        """
        if self.read_engine is not None:
            async with self.read_engine.connect() as connection:
                yield connection
            return
        async with self.engine.begin() as connection:
            yield connection

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
