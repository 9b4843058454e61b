"""Builders for financial data: normalised records, a provider, and rows written through the
real sync store (`services.financial.repository`), so tests exercise the same write path the
sync engine uses.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.database import session_scope
from dashtam.core.state import AppResources
from dashtam.core.types import utcnow
from dashtam.models.financial import (
    AccountData,
    AccountType,
    BalanceData,
    PositionData,
    TransactionData,
    TransactionStatus,
    TransactionType,
)
from dashtam.models.provider import Provider
from dashtam.services.financial.repository import (
    UpsertCounts,
    replace_positions,
    snapshot_balances,
    upsert_accounts,
    upsert_transactions,
)
from tests.support.factories import LoggedIn, seed_login

#: A fixed base instant keeps generated timestamps readable in failures.
BASE_TIME = datetime(2025, 3, 14, 14, 0, tzinfo=UTC)


def make_transaction(external_id: str | int, **overrides: Any) -> TransactionData:
    """A posted $-10.00 trade-free withdrawal unless overridden."""
    values: dict[str, Any] = {
        "external_id": str(external_id),
        "posted_at": BASE_TIME,
        "type": TransactionType.WITHDRAWAL,
        "subtype": "ach_disbursement",
        "status": TransactionStatus.POSTED,
        "amount": Decimal("-10.00"),
        "description": f"ROW {external_id}",
    }
    values.update(overrides)
    return TransactionData(**values)


def make_transactions(count: int, *, start: int = 0, **overrides: Any) -> list[TransactionData]:
    """`count` rows with ids `start…`, one minute apart going back from `BASE_TIME`."""
    return [
        make_transaction(
            i,
            posted_at=BASE_TIME - timedelta(minutes=i),
            amount=Decimal(i % 997) - Decimal("0.37"),
            **overrides,
        )
        for i in range(start, start + count)
    ]


def changed(row: TransactionData, **overrides: Any) -> TransactionData:
    """A copy of `row` with some fields changed (the content hash follows)."""
    return replace(row, **overrides)


def make_account(external_id: str | None = None, **overrides: Any) -> AccountData:
    """A margin account with a random hash as its external id."""
    values: dict[str, Any] = {
        "external_id": external_id or uuid.uuid4().hex.upper() * 2,
        "name": "Individual",
        "type": AccountType.MARGIN,
        "masked_number": "****7365",
    }
    values.update(overrides)
    return AccountData(**values)


def make_balance(current: str | Decimal, **overrides: Any) -> BalanceData:
    """Balances with `current` and whatever else is given."""
    values: dict[str, Any] = {"current": Decimal(current)}
    for name, value in overrides.items():
        values[name] = Decimal(value) if isinstance(value, str) and name != "currency" else value
    return BalanceData(**values)


def make_position(symbol: str, quantity: str, market_value: str, **overrides: Any) -> PositionData:
    """An equity holding."""
    values: dict[str, Any] = {
        "position_key": symbol,
        "symbol": symbol,
        "asset_type": "equity",
        "quantity": Decimal(quantity),
        "market_value": Decimal(market_value),
    }
    for name, value in overrides.items():
        values[name] = Decimal(value) if name in _POSITION_NUMBERS and value is not None else value
    return PositionData(**values)


_POSITION_NUMBERS = frozenset({"average_price", "cost_basis", "unrealized_pl"})


async def create_provider(
    session: AsyncSession, *, user_id: uuid.UUID, **overrides: Any
) -> Provider:
    """An active Schwab connection of `user_id`."""
    values: dict[str, Any] = {
        "user_id": user_id,
        "provider_key": "schwab",
        "alias": f"schwab-{uuid.uuid4().hex[:8]}",
        "status": "active",
        "connected_at": utcnow(),
    }
    values.update(overrides)
    provider = Provider(**values)
    session.add(provider)
    await session.flush()
    return provider


async def create_account(
    session: AsyncSession, *, user_id: uuid.UUID, provider_id: uuid.UUID, **overrides: Any
) -> uuid.UUID:
    """One account written through `upsert_accounts`; returns its id."""
    data = make_account(**overrides)
    ids = await upsert_accounts(
        session,
        user_id=user_id,
        provider_id=provider_id,
        accounts=[data],
        deactivate_missing=False,
    )
    return ids[data.external_id]


@dataclass(frozen=True)
class Holder:
    """A logged-in user with one provider and one account."""

    login: LoggedIn
    provider_id: uuid.UUID
    account_id: uuid.UUID

    @property
    def user_id(self) -> uuid.UUID:
        """The user's id."""
        return self.login.user.id

    @property
    def headers(self) -> dict[str, str]:
        """Bearer header for the API."""
        return self.login.headers


async def seed_holder(resources: AppResources, **account: Any) -> Holder:
    """A user, a login, a provider and an account, committed."""
    login = await seed_login(resources)
    async with session_scope(resources.session_factory) as session:
        provider = await create_provider(session, user_id=login.user.id)
        account_id = await create_account(
            session, user_id=login.user.id, provider_id=provider.id, **account
        )
    return Holder(login=login, provider_id=provider.id, account_id=account_id)


async def seed_account(resources: AppResources, holder: Holder, **account: Any) -> uuid.UUID:
    """Another account under the holder's provider, committed."""
    async with session_scope(resources.session_factory) as session:
        return await create_account(
            session, user_id=holder.user_id, provider_id=holder.provider_id, **account
        )


async def seed_transactions(
    resources: AppResources,
    holder: Holder,
    rows: list[TransactionData],
    *,
    account_id: uuid.UUID | None = None,
    window: tuple[datetime, datetime] | None = None,
) -> UpsertCounts:
    """Write rows through `upsert_transactions` in their own unit of work."""
    async with session_scope(resources.session_factory) as session:
        return await upsert_transactions(
            session,
            user_id=holder.user_id,
            provider_id=holder.provider_id,
            account_id=account_id or holder.account_id,
            rows=rows,
            window_start=window[0] if window else None,
            window_end=window[1] if window else None,
        )


async def seed_balance(
    resources: AppResources, account_id: uuid.UUID, balance: BalanceData, as_of: datetime
) -> int:
    """One balance snapshot through `snapshot_balances`."""
    async with session_scope(resources.session_factory) as session:
        return await snapshot_balances(session, balances={account_id: balance}, as_of=as_of)


async def seed_positions(
    resources: AppResources,
    holder: Holder,
    positions: list[PositionData],
    *,
    account_id: uuid.UUID | None = None,
    as_of: datetime | None = None,
) -> None:
    """The account's holdings through `replace_positions`."""
    async with session_scope(resources.session_factory) as session:
        await replace_positions(
            session,
            user_id=holder.user_id,
            account_id=account_id or holder.account_id,
            positions=positions,
            as_of=as_of or utcnow(),
        )


API = "/api/v1"


async def walk_pages(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    """Every item of a cursor-paged list, following `next_cursor` to the end."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = dict(params)
        if cursor:
            query["cursor"] = cursor
        response = await client.get(f"{API}{path}", headers=headers, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        if not body["has_more"]:
            assert body["next_cursor"] is None
            return items
        cursor = body["next_cursor"]
        assert cursor
