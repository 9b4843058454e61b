"""The portfolio view: total value, cash and holdings of the caller's active accounts.

Sums are exact: every amount is a `Decimal` read from an exact column and added in Python
(SQLite's integer SUM could overflow on large portfolios; Python's Decimal cannot).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.models.financial import Account, Position
from dashtam.schemas.financial import Portfolio, PortfolioAccount, PortfolioAssetType
from dashtam.services.financial.repository import latest_balances

_accounts = Account.__table__  # type: ignore[attr-defined]
_positions = Position.__table__  # type: ignore[attr-defined]

#: The bucket of `by_asset_type` that holds uninvested cash.
CASH_BUCKET = "cash"


async def portfolio(session: AsyncSession, *, user_id: uuid.UUID, currency: str) -> Portfolio:
    """The caller's portfolio over active accounts held in `currency`.

    Per account: `total_value` is the latest reported account value (liquidation value),
    falling back to cash + holdings when the institution reported none; `cash` is the latest
    cash balance; `invested` is the sum of its holdings' market values. `as_of` is the oldest
    `last_seen_at` among the accounts: the moment since which every figure is confirmed.
    """
    zero = Decimal(0)
    accounts = (
        await session.execute(
            select(_accounts)
            .where(
                _accounts.c.user_id == user_id,
                _accounts.c.is_active.is_(True),
                _accounts.c.currency == currency,
            )
            .order_by(_accounts.c.name, _accounts.c.id)
        )
    ).all()
    ids = [row.id for row in accounts]
    latest = await latest_balances(session, ids)
    holdings: list[Any] = []
    if ids:
        holdings = list(
            (
                await session.execute(select(_positions).where(_positions.c.account_id.in_(ids)))
            ).all()
        )
    invested_by_account: dict[uuid.UUID, Decimal] = defaultdict(Decimal)
    buckets: dict[str, dict[str, Decimal | None]] = {}
    for pos in holdings:
        invested_by_account[pos.account_id] += pos.market_value
        bucket = buckets.setdefault(
            pos.asset_type, {"market_value": zero, "cost_basis": zero, "unrealized_pl": zero}
        )
        bucket["market_value"] = (bucket["market_value"] or zero) + pos.market_value
        for name in ("cost_basis", "unrealized_pl"):
            value = getattr(pos, name)
            current = bucket[name]
            bucket[name] = None if current is None or value is None else current + value

    by_account: list[PortfolioAccount] = []
    total = cash_total = invested_total = zero
    seen: list[datetime] = []
    for row in accounts:
        balance = latest.get(row.id)
        cash = (balance.cash if balance is not None else None) or zero
        invested = invested_by_account.get(row.id, zero)
        reported = balance.current if balance is not None else None
        value = reported if reported is not None else cash + invested
        by_account.append(
            PortfolioAccount(
                account_id=row.id,
                name=row.name,
                type=row.type,
                total_value=value,
                cash=cash,
                invested=invested,
                as_of=row.last_seen_at,
            )
        )
        total += value
        cash_total += cash
        invested_total += invested
        seen.append(row.last_seen_at)

    by_asset_type = [
        PortfolioAssetType(
            asset_type=name,
            market_value=values["market_value"] or zero,
            cost_basis=values["cost_basis"],
            unrealized_pl=values["unrealized_pl"],
        )
        for name, values in sorted(buckets.items())
    ]
    if accounts:
        by_asset_type.append(
            PortfolioAssetType(
                asset_type=CASH_BUCKET,
                market_value=cash_total,
                cost_basis=cash_total,
                unrealized_pl=zero,
            )
        )
    unrealized = sum((pos.unrealized_pl for pos in holdings if pos.unrealized_pl is not None), zero)
    return Portfolio(
        currency=currency,
        total_value=total,
        cash=cash_total,
        invested=invested_total,
        unrealized_pl=unrealized,
        by_account=by_account,
        by_asset_type=by_asset_type,
        as_of=min(seen) if seen else None,
    )
