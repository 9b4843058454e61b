"""Transactions and their change feed: `/transactions`, `/transaction-changes` (HTTP only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from dashtam.api.deps import CurrentUser, ReadSessionDep
from dashtam.api.routes.accounts import (
    CursorCodecDep,
    CursorParam,
    LimitParam,
    financial_responses,
)
from dashtam.models.financial import TransactionStatus, TransactionType
from dashtam.schemas.financial import (
    Instant,
    MoneyFilter,
    TransactionChanges,
    TransactionFilters,
    TransactionOut,
    TransactionPage,
)
from dashtam.services.financial import queries
from dashtam.services.financial.errors import (
    AccountNotFound,
    InvalidCursor,
    InvalidFilter,
    ProviderNotFound,
    TransactionNotFound,
)

router = APIRouter(tags=["financial data"])


@router.get(
    "/transactions",
    response_model=TransactionPage,
    responses=financial_responses(AccountNotFound, ProviderNotFound, InvalidCursor, InvalidFilter),
)
async def list_transactions(
    user: CurrentUser,
    session: ReadSessionDep,
    codec: CursorCodecDep,
    account_id: Annotated[uuid.UUID | None, Query()] = None,
    provider_id: Annotated[uuid.UUID | None, Query()] = None,
    since: Annotated[Instant | None, Query(description="posted_at >= since")] = None,
    until: Annotated[Instant | None, Query(description="posted_at < until")] = None,
    transaction_type: Annotated[TransactionType | None, Query(alias="type")] = None,
    status: Annotated[TransactionStatus | None, Query()] = None,
    symbol: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    min_amount: Annotated[MoneyFilter | None, Query(description="amount >= min_amount")] = None,
    max_amount: Annotated[MoneyFilter | None, Query(description="amount <= max_amount")] = None,
    limit: LimitParam = 50,
    cursor: CursorParam = None,
) -> TransactionPage:
    """The caller's transactions, newest first, with filters and keyset pagination."""
    filters = TransactionFilters(
        account_id=account_id,
        provider_id=provider_id,
        since=since,
        until=until,
        type=transaction_type,
        status=status,
        symbol=symbol,
        min_amount=min_amount,
        max_amount=max_amount,
    )
    return await queries.list_transactions(
        session, user_id=user.id, filters=filters, codec=codec, limit=limit, cursor=cursor
    )


@router.get(
    "/transactions/{transaction_id}",
    response_model=TransactionOut,
    responses=financial_responses(TransactionNotFound),
)
async def get_transaction(
    transaction_id: uuid.UUID, user: CurrentUser, session: ReadSessionDep
) -> TransactionOut:
    """One transaction."""
    return await queries.get_transaction(session, user_id=user.id, transaction_id=transaction_id)


@router.get(
    "/transaction-changes",
    response_model=TransactionChanges,
    responses=financial_responses(InvalidCursor),
)
async def list_transaction_changes(
    user: CurrentUser,
    session: ReadSessionDep,
    codec: CursorCodecDep,
    cursor: CursorParam = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Changes per call, 1–500.")] = 100,
) -> TransactionChanges:
    """Everything that changed in the caller's transactions since the cursor, in commit order."""
    return await queries.transaction_changes(
        session, user_id=user.id, codec=codec, cursor=cursor, limit=limit
    )
