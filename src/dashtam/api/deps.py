"""FastAPI dependencies shared by every router: settings, the unit-of-work session, the KV store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.config import Settings
from dashtam.core.database import session_scope
from dashtam.core.kv import KeyValueStore
from dashtam.core.state import AppResources


def get_resources(request: Request) -> AppResources:
    """The application's resources, built by the lifespan."""
    resources: AppResources = request.app.state.resources
    return resources


ResourcesDep = Annotated[AppResources, Depends(get_resources)]


def get_settings(resources: ResourcesDep) -> Settings:
    """The running application's settings."""
    return resources.settings


async def get_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    """One unit of work per request: commit on success, roll back on error."""
    async with session_scope(resources.session_factory) as session:
        yield session


def get_kv(resources: ResourcesDep) -> KeyValueStore:
    """The key/value store (Redis or in-process)."""
    return resources.kv


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
KVDep = Annotated[KeyValueStore, Depends(get_kv)]
