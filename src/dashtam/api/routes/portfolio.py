"""The caller's portfolio summary: `/portfolio` (HTTP only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dashtam.api.deps import CurrentUser, ReadSessionDep
from dashtam.api.routes.accounts import financial_responses
from dashtam.schemas.financial import Portfolio
from dashtam.services.financial.portfolio import portfolio

router = APIRouter(tags=["financial data"])


@router.get("/portfolio", response_model=Portfolio, responses=financial_responses())
async def read_portfolio(
    user: CurrentUser,
    session: ReadSessionDep,
    currency: Annotated[
        str, Query(pattern=r"^[A-Z]{3}$", description="ISO 4217 code; accounts in it only.")
    ] = "USD",
) -> Portfolio:
    """Total value, cash and holdings of the caller's active accounts, exactly summed."""
    return await portfolio(session, user_id=user.id, currency=currency)
