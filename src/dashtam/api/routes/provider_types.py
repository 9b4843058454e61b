"""`/provider-types`: the institutions this server can connect to. HTTP only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from dashtam.api.deps import CurrentUser, ResourcesDep
from dashtam.api.routes.auth import problem_responses
from dashtam.schemas.providers import ProviderType, ProviderTypeList
from dashtam.services.connections import service
from dashtam.services.connections.errors import ProviderTypeNotFound

router = APIRouter(prefix="/provider-types", tags=["providers"])


@router.get("", response_model=ProviderTypeList)
async def list_provider_types(_user: CurrentUser, resources: ResourcesDep) -> ProviderTypeList:
    """List the institutions offered, and whether each is configured."""
    items = [ProviderType(**item) for item in service.provider_types(resources)]
    return ProviderTypeList(items=items)


@router.get(
    "/{key}",
    response_model=ProviderType,
    responses=problem_responses(ProviderTypeNotFound),
)
async def get_provider_type(
    _user: CurrentUser,
    resources: ResourcesDep,
    key: Annotated[str, Path(max_length=32)],
) -> ProviderType:
    """Describe one institution."""
    return ProviderType(**service.provider_type(resources, key))
