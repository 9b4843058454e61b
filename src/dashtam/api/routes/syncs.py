"""Sync runs: trigger one, list a provider's, watch one (HTTP only)."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Request, Response, status

from dashtam.api.deps import CurrentUser, ResourcesDep, SessionDep
from dashtam.api.routes.accounts import (
    CursorCodecDep,
    CursorParam,
    LimitParam,
    financial_responses,
)
from dashtam.core.request_context import set_provider_id
from dashtam.schemas.syncs import SyncAccepted, SyncRunOut, SyncRunPage
from dashtam.services.connections.errors import ProviderNotFound
from dashtam.services.financial.errors import InvalidCursor
from dashtam.services.sync import service
from dashtam.services.sync.errors import SyncNotAllowed, SyncRunNotFound

router = APIRouter(tags=["syncs"])

_CURSOR_KIND = "sync_runs"


@router.post(
    "/providers/{provider_id}/syncs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SyncAccepted,
    responses=financial_responses(ProviderNotFound, SyncNotAllowed),
)
async def start_sync(
    provider_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    resources: ResourcesDep,
    request: Request,
    response: Response,
) -> SyncAccepted:
    """Sync the provider now (or get the sync already queued or running)."""
    set_provider_id(str(provider_id))
    requested = await service.request_sync(
        session, resources, user_id=user.id, provider_id=provider_id
    )
    run = requested.run
    response.headers["Location"] = request.url_for("get_sync", sync_id=str(run.id)).path
    return SyncAccepted(id=run.id, status=run.status, trigger=run.trigger)


@router.get(
    "/providers/{provider_id}/syncs",
    response_model=SyncRunPage,
    responses=financial_responses(ProviderNotFound, InvalidCursor),
)
async def list_syncs(
    provider_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    codec: CursorCodecDep,
    limit: LimitParam = 50,
    cursor: CursorParam = None,
) -> SyncRunPage:
    """The provider's sync runs, newest first."""
    before: tuple[datetime, uuid.UUID] | None = None
    if cursor is not None:
        created, run_id = codec.decode(_CURSOR_KIND, cursor, 2)
        try:
            before = (datetime.fromisoformat(created), uuid.UUID(run_id))
        except (TypeError, ValueError) as exc:
            raise InvalidCursor("The cursor is malformed.") from exc
    items = await service.list_runs_for_user(
        session, user_id=user.id, provider_id=provider_id, limit=limit + 1, before=before
    )
    has_more = len(items) > limit
    items = items[:limit]
    next_cursor = (
        codec.encode(_CURSOR_KIND, items[-1].created_at.isoformat(), str(items[-1].id))
        if has_more
        else None
    )
    return SyncRunPage(
        items=[SyncRunOut.of(run) for run in items], next_cursor=next_cursor, has_more=has_more
    )


@router.get(
    "/syncs/{sync_id}",
    response_model=SyncRunOut,
    responses=financial_responses(SyncRunNotFound),
)
async def get_sync(sync_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> SyncRunOut:
    """One sync run: status, counts, error."""
    run = await service.get_run_for_user(session, user_id=user.id, run_id=sync_id)
    return SyncRunOut.of(run)
