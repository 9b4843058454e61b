"""`/providers`: the caller's institution connections and their audit trail. HTTP only."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from dashtam.api.deps import ClientDep, CurrentUser, ResourcesDep, SessionDep
from dashtam.api.routes.auth import problem_responses
from dashtam.core.errors import BadRequest
from dashtam.models.provider import ProviderStatus
from dashtam.schemas.providers import (
    AuditLogList,
    AuditLogRead,
    ProviderCreate,
    ProviderList,
    ProviderRead,
    ProviderUpdate,
)
from dashtam.services.auth.toolkit import ClientInfo
from dashtam.services.connections.audit import AuditOrigin
from dashtam.services.connections.errors import AliasTaken, ProviderNotFound
from dashtam.services.connections.service import ConnectionService

router = APIRouter(prefix="/providers", tags=["providers"])


def audit_origin(client: ClientInfo) -> AuditOrigin:
    """The caller's IP and request id, as the audit trail records them."""
    return AuditOrigin(ip_address=client.ip_address, request_id=client.request_id)


class _UnknownProvider(BadRequest):
    """Documentation only."""

    code = "unknown_provider"


class _NotConfigured(BadRequest):
    """Documentation only."""

    code = "provider_not_configured"


@router.post(
    "",
    status_code=201,
    response_model=ProviderRead,
    responses=problem_responses(_UnknownProvider, _NotConfigured, AliasTaken),
)
async def create_provider(
    body: ProviderCreate,
    user: CurrentUser,
    session: SessionDep,
    resources: ResourcesDep,
    client: ClientDep,
    request: Request,
    response: Response,
) -> ProviderRead:
    """Create a connection (status `pending`); authorize it next."""
    connections = ConnectionService(session, resources, origin=audit_origin(client))
    provider = await connections.create(
        user_id=user.id, provider_key=body.provider_key, alias=body.alias
    )
    response.headers["Location"] = request.url_for("get_provider", provider_id=provider.id).path
    return ProviderRead.model_validate(provider)


@router.get("", response_model=ProviderList)
async def list_providers(
    user: CurrentUser,
    session: SessionDep,
    resources: ResourcesDep,
    client: ClientDep,
    status: ProviderStatus | None = None,
    provider_key: Annotated[str | None, Query(max_length=32)] = None,
) -> ProviderList:
    """List the caller's connections, oldest first."""
    connections = ConnectionService(session, resources, origin=audit_origin(client))
    providers = await connections.list(user_id=user.id, status=status, provider_key=provider_key)
    return ProviderList(items=[ProviderRead.model_validate(p) for p in providers])


@router.get(
    "/{provider_id}",
    response_model=ProviderRead,
    responses=problem_responses(ProviderNotFound),
)
async def get_provider(
    provider_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    resources: ResourcesDep,
    client: ClientDep,
) -> ProviderRead:
    """Read one connection."""
    connections = ConnectionService(session, resources, origin=audit_origin(client))
    provider = await connections.get(user_id=user.id, provider_id=provider_id)
    return ProviderRead.model_validate(provider)


@router.patch(
    "/{provider_id}",
    response_model=ProviderRead,
    responses=problem_responses(ProviderNotFound, AliasTaken),
)
async def rename_provider(
    provider_id: uuid.UUID,
    body: ProviderUpdate,
    user: CurrentUser,
    session: SessionDep,
    resources: ResourcesDep,
    client: ClientDep,
) -> ProviderRead:
    """Change a connection's alias."""
    connections = ConnectionService(session, resources, origin=audit_origin(client))
    provider = await connections.rename(user_id=user.id, provider_id=provider_id, alias=body.alias)
    return ProviderRead.model_validate(provider)


@router.delete(
    "/{provider_id}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(ProviderNotFound),
)
async def delete_provider(
    provider_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    resources: ResourcesDep,
    client: ClientDep,
    purge: Annotated[
        bool, Query(description="Also remove the accounts and history synced from it.")
    ] = False,
) -> Response:
    """Delete a connection; its tokens are destroyed (the audit trail stays)."""
    connections = ConnectionService(session, resources, origin=audit_origin(client))
    await connections.delete(user_id=user.id, provider_id=provider_id, purge=purge)
    return Response(status_code=204)


@router.get(
    "/{provider_id}/audit-logs",
    response_model=AuditLogList,
    responses=problem_responses(ProviderNotFound),
)
async def list_audit_logs(
    provider_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    resources: ResourcesDep,
    client: ClientDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AuditLogList:
    """The connection's audit trail, newest first (kept after the connection is deleted)."""
    connections = ConnectionService(session, resources, origin=audit_origin(client))
    page = await connections.audit_logs(
        user_id=user.id, provider_id=provider_id, limit=limit, cursor=cursor
    )
    return AuditLogList(
        items=[AuditLogRead.model_validate(row) for row in page.items],
        next_cursor=page.next_cursor,
        has_more=page.next_cursor is not None,
    )
