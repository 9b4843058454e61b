"""Holdings across every account of the caller: `/positions` (HTTP only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dashtam.api.deps import CurrentUser, ReadSessionDep
from dashtam.api.routes.accounts import financial_responses
from dashtam.schemas.financial import GroupBy, PositionGroupList, PositionList
from dashtam.services.financial import queries

router = APIRouter(tags=["financial data"])


@router.get(
    "/positions",
    response_model=PositionList | PositionGroupList,
    responses=financial_responses(),
)
async def list_positions(
    user: CurrentUser,
    session: ReadSessionDep,
    group_by: Annotated[
        GroupBy | None, Query(description="`symbol`: one row per symbol, summed exactly.")
    ] = None,
) -> PositionList | PositionGroupList:
    """Current holdings across all accounts, optionally summed per symbol."""
    if group_by == "symbol":
        return await queries.grouped_positions(session, user_id=user.id)
    return await queries.list_positions(session, user_id=user.id)
