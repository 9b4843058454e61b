"""The resources one running application owns, created in the lifespan and closed after."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from dashtam.core.config import Settings
from dashtam.core.database import SessionFactory
from dashtam.core.kv import KeyValueStore


@dataclass
class AppResources:
    """Everything `create_app()`'s lifespan builds; reached through `request.app.state`."""

    settings: Settings
    engine: AsyncEngine
    session_factory: SessionFactory
    kv: KeyValueStore
    extras: dict[str, Any] = field(default_factory=dict)

    async def close(self) -> None:
        """Release connections in reverse order of creation."""
        await self.kv.close()
        await self.engine.dispose()
