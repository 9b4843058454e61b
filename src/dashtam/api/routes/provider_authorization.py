"""`/providers/{id}/authorization`: connect, inspect, refresh and disconnect. HTTP only.

The callback endpoint is authenticated by the single-use `state`, not by a bearer token: the
account holder's browser (through the callback server) carries it back from the institution.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse

from dashtam.api.deps import (
    ClientDep,
    CurrentUser,
    CurrentUserDetached,
    ResourcesDep,
    SessionDep,
)
from dashtam.api.routes.auth import problem_responses
from dashtam.api.routes.providers import audit_origin
from dashtam.callback.pages import render_result_page
from dashtam.core.errors import (
    AppError,
    BadGateway,
    Conflict,
    GatewayTimeout,
    ServiceUnavailable,
    TooManyRequests,
)
from dashtam.core.request_context import current_request_id, set_provider_id
from dashtam.schemas.providers import (
    AuthorizationCompleted,
    AuthorizationStarted,
    AuthorizationStatus,
)
from dashtam.services.connections.authorization import AuthorizationService
from dashtam.services.connections.errors import (
    AuthorizationRefused,
    InvalidState,
    NotConnected,
    ProviderNotFound,
)
from dashtam.services.connections.service import ConnectionService

router = APIRouter(prefix="/providers/{provider_id}/authorization", tags=["providers"])


class _ReauthRequired(Conflict):
    """Documentation only."""

    code = "reauth_required"


_UPSTREAM_ERRORS: tuple[type[AppError], ...] = (BadGateway, ServiceUnavailable, GatewayTimeout)


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return "text/html" in accept


@router.post(
    "",
    status_code=201,
    response_model=AuthorizationStarted,
    responses=problem_responses(ProviderNotFound, TooManyRequests),
)
async def start_authorization(
    provider_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    resources: ResourcesDep,
    client: ClientDep,
    request: Request,
    response: Response,
) -> AuthorizationStarted:
    """Start connecting: open `authorization_url` in the account holder's browser."""
    set_provider_id(str(provider_id))
    flow = AuthorizationService(resources, origin=audit_origin(client))
    started = await flow.start(session, user_id=user.id, provider_id=provider_id)
    response.headers["Location"] = request.url_for(
        "get_authorization", provider_id=provider_id
    ).path
    return AuthorizationStarted(
        authorization_url=started.authorization_url,
        state=started.state,
        expires_at=started.expires_at,
    )


@router.get(
    "",
    response_model=AuthorizationStatus,
    responses=problem_responses(ProviderNotFound),
)
async def get_authorization(
    provider_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    resources: ResourcesDep,
    client: ClientDep,
) -> AuthorizationStatus:
    """Where the connection's authorization stands (expiries, scope, last refresh)."""
    connections = ConnectionService(session, resources, origin=audit_origin(client))
    state = await connections.authorization_state(user_id=user.id, provider_id=provider_id)
    return AuthorizationStatus.model_validate(state)


@router.patch(
    "",
    response_model=AuthorizationStatus,
    responses=problem_responses(ProviderNotFound, _ReauthRequired, NotConnected, *_UPSTREAM_ERRORS),
)
async def refresh_authorization(
    provider_id: uuid.UUID,
    user: CurrentUserDetached,
    resources: ResourcesDep,
    client: ClientDep,
) -> AuthorizationStatus:
    """Refresh the access token now."""
    set_provider_id(str(provider_id))
    flow = AuthorizationService(resources, origin=audit_origin(client))
    state = await flow.refresh(user_id=user.id, provider_id=provider_id)
    return AuthorizationStatus.model_validate(state)


@router.delete(
    "",
    status_code=204,
    response_class=Response,
    responses=problem_responses(ProviderNotFound),
)
async def disconnect(
    provider_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    resources: ResourcesDep,
    client: ClientDep,
) -> Response:
    """Disconnect: destroy the tokens; the connection stays, `disconnected`."""
    connections = ConnectionService(session, resources, origin=audit_origin(client))
    await connections.disconnect(user_id=user.id, provider_id=provider_id)
    return Response(status_code=204)


@router.get(
    "/callback",
    response_model=AuthorizationCompleted,
    responses={
        **problem_responses(InvalidState, AuthorizationRefused, *_UPSTREAM_ERRORS),
        200: {"content": {"text/html": {}}, "description": "JSON, or HTML for browsers."},
    },
)
async def authorization_callback(
    provider_id: uuid.UUID,
    request: Request,
    resources: ResourcesDep,
    client: ClientDep,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    state: Annotated[str | None, Query(max_length=256)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
    error_description: Annotated[str | None, Query(max_length=2048)] = None,
) -> AuthorizationCompleted | HTMLResponse:
    """Finish connecting (authenticated by the single-use `state`, not a bearer token)."""
    # `error_description` is accepted (institutions send it) but never shown or stored: it is
    # attacker-controlled text and some institutions put token digests in it.
    del error_description
    set_provider_id(str(provider_id))
    flow = AuthorizationService(resources, origin=audit_origin(client))
    try:
        result = await flow.complete(provider_id=provider_id, state=state, code=code, error=error)
    except AppError as exc:
        if not _wants_html(request):
            raise
        page = render_result_page(
            ok=False, title=exc.title, message=exc.detail, reference=current_request_id()
        )
        return HTMLResponse(page, status_code=exc.status, headers=exc.headers)
    body = AuthorizationCompleted(
        provider_id=result.provider_id,
        status=result.status,
        message=result.message,
    )
    if _wants_html(request):
        return HTMLResponse(render_result_page(ok=True, title="Connected", message=result.message))
    return body
