"""Accounts, their balance history and their holdings: `/accounts…` (HTTP only)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from dashtam.api.deps import CurrentUser, ReadSessionDep, SettingsDep
from dashtam.api.routes.auth import problem_responses
from dashtam.core.errors import AppError, TooManyRequests, Unauthorized, UnprocessableEntity
from dashtam.models.financial import AccountType
from dashtam.schemas.financial import (
    AccountDetail,
    AccountList,
    BalancePage,
    Instant,
    Limit,
    PositionList,
)
from dashtam.services.financial import queries
from dashtam.services.financial.cursors import MAX_CURSOR_LENGTH, CursorCodec
from dashtam.services.financial.errors import (
    AccountNotFound,
    InvalidCursor,
    InvalidFilter,
    ProviderNotFound,
)

router = APIRouter(tags=["financial data"])


async def get_cursor_codec(settings: SettingsDep) -> CursorCodec:
    """Signs and checks the list cursors with a key derived from the server secret."""
    return CursorCodec(settings.secret_key_bytes)


CursorCodecDep = Annotated[CursorCodec, Depends(get_cursor_codec)]
CursorParam = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR_LENGTH, description="`next_cursor` of the previous page."),
]
LimitParam = Annotated[Limit, Query(description="Page size, 1–500.")]


def financial_responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for an authenticated financial route and its own errors."""
    return problem_responses(Unauthorized, TooManyRequests, UnprocessableEntity, *errors)


@router.get(
    "/accounts", response_model=AccountList, responses=financial_responses(ProviderNotFound)
)
async def list_accounts(
    user: CurrentUser,
    session: ReadSessionDep,
    provider_id: Annotated[uuid.UUID | None, Query()] = None,
    account_type: Annotated[AccountType | None, Query(alias="type")] = None,
) -> AccountList:
    """The caller's accounts, each with its latest balance."""
    return await queries.list_accounts(
        session,
        user_id=user.id,
        provider_id=provider_id,
        account_type=account_type.value if account_type else None,
    )


@router.get(
    "/accounts/{account_id}",
    response_model=AccountDetail,
    responses=financial_responses(AccountNotFound),
)
async def get_account(
    account_id: uuid.UUID, user: CurrentUser, session: ReadSessionDep
) -> AccountDetail:
    """One account with its latest balances."""
    return await queries.get_account(session, user_id=user.id, account_id=account_id)


@router.get(
    "/accounts/{account_id}/balances",
    response_model=BalancePage,
    responses=financial_responses(AccountNotFound, InvalidCursor, InvalidFilter),
)
async def list_balances(
    account_id: uuid.UUID,
    user: CurrentUser,
    session: ReadSessionDep,
    codec: CursorCodecDep,
    since: Annotated[Instant | None, Query(description="as_of >= since")] = None,
    until: Annotated[Instant | None, Query(description="as_of < until")] = None,
    limit: LimitParam = 50,
    cursor: CursorParam = None,
) -> BalancePage:
    """Balance snapshots of one account, newest first (a new one whenever a value changed)."""
    return await queries.list_balances(
        session,
        user_id=user.id,
        account_id=account_id,
        codec=codec,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/accounts/{account_id}/positions",
    response_model=PositionList,
    responses=financial_responses(AccountNotFound),
)
async def list_account_positions(
    account_id: uuid.UUID, user: CurrentUser, session: ReadSessionDep
) -> PositionList:
    """Current holdings of one account."""
    return await queries.list_positions(session, user_id=user.id, account_id=account_id)
