"""The sync store: idempotent bulk writes of accounts, balances, positions and transactions.

This is the interface the sync engine calls (see `docs/development/architecture/sync-engine.md`).
Every function takes the caller's session and only flushes; the caller's unit of work commits.
All writes are idempotent: writing the same data again changes nothing, and a crash between
any two statements leaves no duplicate (uniqueness on (provider, external id) and (account,
external id)), so a rerun completes the work.

Transactions are written in batches, one upsert statement per batch, and only rows whose
normalised content changed are written at all. Every write of a transaction takes numbers from
the owner's change counter, which orders the change feed in commit order.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    and_,
    bindparam,
    column,
    delete,
    func,
    literal_column,
    null,
    select,
    table,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.types import utcnow
from dashtam.models.financial import (
    Account,
    AccountData,
    AccountSnapshot,
    BalanceData,
    BalanceSnapshot,
    FinancialChangeCounter,
    Position,
    PositionData,
    Transaction,
    TransactionData,
)

#: Rows per upsert statement: 25 columns x 1000 rows stays under both SQLite's variable limit
#: (32766) and the PostgreSQL wire protocol's 32767 parameters per statement.
DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 1000

_T = TypeVar("_T")
BatchHook = Callable[[int], Awaitable[None] | None]

_accounts = Account.__table__  # type: ignore[attr-defined]
_balances = BalanceSnapshot.__table__  # type: ignore[attr-defined]
_positions = Position.__table__  # type: ignore[attr-defined]
_transactions = Transaction.__table__  # type: ignore[attr-defined]
_counters = FinancialChangeCounter.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class UpsertCounts:
    """What one write changed. `removed` counts soft deletions inside the re-fetched window."""

    added: int = 0
    modified: int = 0
    removed: int = 0

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.added + other.added,
            self.modified + other.modified,
            self.removed + other.removed,
        )

    @property
    def changed(self) -> bool:
        """Whether anything was written."""
        return bool(self.added or self.modified or self.removed)


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _insert(session: AsyncSession, table: Any) -> Any:
    """The dialect's INSERT (both offer `on_conflict_do_update` and `excluded`)."""
    if _dialect(session) == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def reserve_change_numbers(session: AsyncSession, *, user_id: uuid.UUID, count: int) -> int:
    """Take `count` consecutive numbers from the user's change counter; return the last.

    One atomic upsert (`… ON CONFLICT (user_id) DO UPDATE SET value = value + n RETURNING
    value`). On PostgreSQL the counter row stays locked until the caller's transaction ends,
    so writers of one user commit in number order; SQLite has a single writer anyway.
    """
    if count < 1:
        raise ValueError("count must be positive")
    stmt = _insert(session, _counters).values(id=uuid.uuid4(), user_id=user_id, value=count)
    stmt = stmt.on_conflict_do_update(
        index_elements=[_counters.c.user_id],
        set_={"value": _counters.c.value + stmt.excluded.value},
    ).returning(_counters.c.value)
    last: int = (await session.execute(stmt)).scalar_one()
    return last


# --- accounts, balances, positions ----------------------------------------------------------


async def upsert_accounts(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    provider_id: uuid.UUID,
    accounts: Sequence[AccountData],
    seen_at: datetime | None = None,
    deactivate_missing: bool = True,
) -> dict[str, uuid.UUID]:
    """Insert or update the provider's accounts by external id (the institution's hash).

    Args:
        session: The unit of work.
        user_id: The provider's owner.
        provider_id: The connection the accounts belong to.
        accounts: Every account the institution exposed in this sync.
        seen_at: When they were fetched (default now); sets `last_seen_at`.
        deactivate_missing: Mark the provider's other accounts inactive (closed, or no longer
            shared at consent). Pass False when `accounts` is a partial list.

    Returns:
        External id -> our account id, for every account passed.
    """
    seen_at = seen_at or utcnow()
    unique = {a.external_id: a for a in accounts}
    ids: dict[str, uuid.UUID] = {}
    if unique:
        stmt = _insert(session, _accounts).values(
            [
                {
                    "id": uuid.uuid4(),
                    "user_id": user_id,
                    "provider_id": provider_id,
                    "external_id": a.external_id,
                    "masked_number": a.masked_number,
                    "name": a.name,
                    "type": a.type.value,
                    "currency": a.currency,
                    "is_active": True,
                    "first_seen_at": seen_at,
                    "last_seen_at": seen_at,
                    "created_at": seen_at,
                    "updated_at": seen_at,
                }
                for a in unique.values()
            ]
        )
        excluded = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[_accounts.c.provider_id, _accounts.c.external_id],
            set_={
                "masked_number": excluded.masked_number,
                "name": excluded.name,
                "type": excluded.type,
                "currency": excluded.currency,
                "is_active": True,
                "last_seen_at": excluded.last_seen_at,
                "updated_at": excluded.updated_at,
            },
            # An account row can never move to another owner.
            where=_accounts.c.user_id == excluded.user_id,
        ).returning(_accounts.c.external_id, _accounts.c.id)
        for external_id, account_id in (await session.execute(stmt)).all():
            ids[external_id] = account_id
        missing = set(unique) - set(ids)
        if missing:
            raise ValueError("accounts belong to another user; refusing to take them over")
    if deactivate_missing:
        condition = and_(_accounts.c.provider_id == provider_id, _accounts.c.is_active.is_(True))
        if ids:
            condition = and_(condition, _accounts.c.external_id.not_in(list(ids)))
        await session.execute(
            update(_accounts).where(condition).values(is_active=False, updated_at=seen_at)
        )
    return ids


async def latest_balances(
    session: AsyncSession, account_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Any]:
    """The newest snapshot row of each account (accounts without one are absent)."""
    wanted = list(account_ids)
    if not wanted:
        return {}
    ranked = (
        select(
            _balances,
            func.row_number()
            .over(
                partition_by=_balances.c.account_id,
                order_by=(_balances.c.as_of.desc(), _balances.c.id.desc()),
            )
            .label("rank"),
        )
        .where(_balances.c.account_id.in_(wanted))
        .subquery()
    )
    rows = (await session.execute(select(ranked).where(ranked.c.rank == 1))).all()
    return {row.account_id: row for row in rows}


_BALANCE_FIELDS = (
    "current",
    "available",
    "cash",
    "buying_power",
    "liquidation_value",
    "long_market_value",
    "short_market_value",
    "money_market_fund",
)


async def snapshot_balances(
    session: AsyncSession, *, balances: Mapping[uuid.UUID, BalanceData], as_of: datetime
) -> int:
    """Record each account's balances, but only where a value differs from its latest snapshot.

    Args:
        session: The unit of work.
        balances: Account id -> balances fetched in this sync.
        as_of: When they were fetched.

    Returns:
        How many snapshots were inserted.
    """
    latest = await latest_balances(session, balances)
    new_rows: list[dict[str, Any]] = []
    for account_id, data in balances.items():
        previous = latest.get(account_id)
        if previous is not None:
            before = tuple(getattr(previous, name) for name in _BALANCE_FIELDS)
            if before == data.values() and previous.currency == data.currency:
                continue
        row: dict[str, Any] = {name: getattr(data, name) for name in _BALANCE_FIELDS}
        row.update(id=uuid.uuid4(), account_id=account_id, as_of=as_of, currency=data.currency)
        new_rows.append(row)
    if new_rows:
        await session.execute(_balances.insert(), new_rows)
    return len(new_rows)


_POSITION_FIELDS = (
    "symbol",
    "cusip",
    "asset_type",
    "description",
    "quantity",
    "average_price",
    "market_value",
    "cost_basis",
    "unrealized_pl",
    "currency",
)


@dataclass(frozen=True)
class PositionCounts:
    """What `replace_positions` changed."""

    added: int = 0
    modified: int = 0
    removed: int = 0


async def replace_positions(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    positions: Sequence[PositionData],
    as_of: datetime,
) -> PositionCounts:
    """Make the account's holdings exactly `positions` (keyed by `position_key`).

    Unchanged holdings keep their row; changed ones are updated; holdings that are gone are
    deleted (history lives in transactions and balance snapshots). Every remaining holding's
    `as_of` becomes `as_of`: the values were confirmed by this fetch.
    """
    wanted = {p.position_key: p for p in positions}
    existing = {
        row.position_key: row
        for row in (
            await session.execute(select(_positions).where(_positions.c.account_id == account_id))
        ).all()
    }
    gone = [row.id for key, row in existing.items() if key not in wanted]
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for key, pos in wanted.items():
        values = {name: getattr(pos, name) for name in _POSITION_FIELDS}
        row = existing.get(key)
        if row is None:
            values.update(
                id=uuid.uuid4(),
                user_id=user_id,
                account_id=account_id,
                position_key=key,
                as_of=as_of,
            )
            inserts.append(values)
        elif any(getattr(row, name) != values[name] for name in _POSITION_FIELDS):
            values["row_id"] = row.id
            updates.append(values)
    if gone:
        await session.execute(delete(_positions).where(_positions.c.id.in_(gone)))
    if inserts:
        await session.execute(_positions.insert(), inserts)
    if updates:
        stmt = (
            update(_positions)
            .where(_positions.c.id == bindparam("row_id"))
            .values({name: bindparam(name) for name in _POSITION_FIELDS})
        )
        await session.execute(stmt, updates)
    if wanted:
        await session.execute(
            update(_positions).where(_positions.c.account_id == account_id).values(as_of=as_of)
        )
    return PositionCounts(added=len(inserts), modified=len(updates), removed=len(gone))


async def store_account_snapshots(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    provider_id: uuid.UUID,
    snapshots: Sequence[AccountSnapshot],
    as_of: datetime | None = None,
) -> dict[str, uuid.UUID]:
    """Everything one `accounts` fetch yields: accounts, balance snapshots and holdings.

    Positions are replaced only for accounts whose payload carried positions (`positions` is
    not None), so an account fetched without them keeps its holdings.

    Returns:
        External id -> account id.
    """
    as_of = as_of or utcnow()
    ids = await upsert_accounts(
        session,
        user_id=user_id,
        provider_id=provider_id,
        accounts=[s.account for s in snapshots],
        seen_at=as_of,
    )
    await snapshot_balances(
        session,
        balances={ids[s.account.external_id]: s.balance for s in snapshots},
        as_of=as_of,
    )
    for snap in snapshots:
        if snap.positions is not None:
            await replace_positions(
                session,
                user_id=user_id,
                account_id=ids[snap.account.external_id],
                positions=snap.positions,
                as_of=as_of,
            )
    return ids


# --- transactions ---------------------------------------------------------------------------

_UPDATABLE = (
    "posted_at",
    "trade_date",
    "settlement_date",
    "type",
    "subtype",
    "status",
    "description",
    "amount",
    "currency",
    "symbol",
    "quantity",
    "price",
    "fees",
    "raw",
    "content_hash",
    "last_modified_at",
    "change_seq",
)


def _transaction_values(
    row: TransactionData,
    *,
    user_id: uuid.UUID,
    provider_id: uuid.UUID,
    account_id: uuid.UUID,
    seq: int,
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "user_id": user_id,
        "provider_id": provider_id,
        "account_id": account_id,
        "external_id": row.external_id,
        "posted_at": row.posted_at,
        "trade_date": row.trade_date,
        "settlement_date": row.settlement_date,
        "type": row.type.value,
        "subtype": row.subtype,
        "status": row.status.value,
        "description": row.description,
        "amount": row.amount,
        "currency": row.currency,
        "symbol": row.symbol,
        "quantity": row.quantity,
        "price": row.price,
        "fees": row.fees,
        "raw": row.raw,
        "content_hash": row.content_hash,
        "first_seen_at": now,
        "last_modified_at": now,
        "removed_at": None,
        "created_seq": seq,
        "change_seq": seq,
    }


def _upsert_statement(session: AsyncSession) -> Any:
    """The batch upsert, built without values: executed with a list of rows, SQLAlchemy's
    "insertmanyvalues" renders one multi-row INSERT per batch from a cached compilation
    (compiling a fresh 25,000-parameter statement per batch costs more than running it)."""
    return _on_conflict(session, _insert(session, _transactions))


def _on_conflict(session: AsyncSession, stmt: Any) -> Any:
    """`stmt` (an INSERT into transactions) as the idempotent upsert with its RETURNING."""
    excluded = stmt.excluded
    table = _transactions.c
    set_: dict[str, Any] = {name: getattr(excluded, name) for name in _UPDATABLE}
    set_["removed_at"] = null()
    # Changed or reappearing rows only: an identical row is not touched at all (no new
    # timestamps, no change number), which is what makes re-syncing unchanged data free.
    changed = table.content_hash.is_distinct_from(excluded.content_hash) | table.removed_at.isnot(
        None
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.account_id, table.external_id], set_=set_, where=changed
    )
    if _dialect(session) == "postgresql":
        # xmax is 0 only for a freshly inserted tuple: tells added from modified atomically.
        return stmt.returning(table.external_id, literal_column("(xmax = 0)").label("inserted"))
    return stmt.returning(table.external_id)


#: Per-transaction staging table of the PostgreSQL write path (dropped at commit).
_STAGE = "transactions_stage"
_STAGE_COLUMNS: tuple[str, ...] = tuple(column.name for column in _transactions.columns)


async def _copy_upsert(session: AsyncSession, values: list[dict[str, Any]]) -> Sequence[Any]:
    """PostgreSQL: the batch upsert via `COPY` into a temporary table and one `INSERT … SELECT`.

    Measured on the whale sync: a 1000-row multi-row `VALUES` upsert spends most of its time
    binding and planning 25,000 parameters (~3k rows/s end to end); `COPY` plus `INSERT …
    SELECT … ON CONFLICT` runs the same upsert (same `ON CONFLICT … WHERE`, same `RETURNING`)
    several times faster. It runs on the session's connection, inside its transaction, so the
    lease renewal and the write still commit or roll back together.

    Values go through each column type's bind processor first, exactly as a normal insert
    would (exact decimals quantised, timestamps checked and in UTC, JSON serialised as text).
    """
    connection = await session.connection()
    dialect = connection.dialect
    await session.execute(
        text(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} "
            "(LIKE transactions INCLUDING DEFAULTS) ON COMMIT DROP"
        )
    )
    processors = [
        (name, _transactions.c[name].type.dialect_impl(dialect).bind_processor(dialect))
        for name in _STAGE_COLUMNS
    ]
    records = [
        tuple(
            value[name] if process is None else process(value[name]) for name, process in processors
        )
        for value in values
    ]
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    await driver.copy_records_to_table(_STAGE, records=records, columns=_STAGE_COLUMNS)
    stage = table(_STAGE, *(column(name) for name in _STAGE_COLUMNS))
    stmt = postgresql.insert(_transactions).from_select(
        list(_STAGE_COLUMNS), select(*(stage.c[name] for name in _STAGE_COLUMNS))
    )
    rows = (await session.execute(_on_conflict(session, stmt))).all()
    # Empty the stage for the next batch of this transaction (cheap on a temporary table).
    await session.execute(text(f"TRUNCATE {_STAGE}"))
    return rows


async def _known_rows(
    session: AsyncSession, *, account_id: uuid.UUID, external_ids: list[str]
) -> dict[str, tuple[str, datetime | None]]:
    """External id -> (content hash, removed_at) of the rows of this batch that exist."""
    table = _transactions.c
    stmt = select(table.external_id, table.content_hash, table.removed_at).where(
        table.account_id == account_id, table.external_id.in_(external_ids)
    )
    postgres = _dialect(session) == "postgresql"
    if postgres:
        # asyncpg prepares statements, and after five runs PostgreSQL may switch to a generic
        # plan made while the table looked empty: a sequential scan per batch, quadratic over
        # a large first import (measured: 6 s per batch at 100k rows). A custom plan sees the
        # table's real size and probes the unique index. Only this statement gets it: forcing
        # custom plans on the inserts (and their foreign-key checks) costs 4x.
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    rows = (await session.execute(stmt)).all()
    if postgres:
        await session.execute(text("SET LOCAL plan_cache_mode = auto"))
    return {
        external_id: (content_hash, removed_at) for external_id, content_hash, removed_at in rows
    }


async def upsert_transactions(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    provider_id: uuid.UUID,
    account_id: uuid.UUID,
    rows: Sequence[TransactionData],
    window_start: datetime | None,
    window_end: datetime | None,
    now: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: BatchHook | None = None,
) -> UpsertCounts:
    """Upsert one account's transactions of one fetched window; soft-delete what vanished.

    For each batch: one SELECT finds which rows are new or changed (by `content_hash`), and
    only if any are, one counter bump numbers them and one upsert writes them
    (`ON CONFLICT (account_id, external_id) DO UPDATE … WHERE content_hash IS DISTINCT FROM
    excluded.content_hash OR removed_at IS NOT NULL RETURNING …`). Then every live row of the
    account with `window_start <= posted_at <= window_end` that did not come back is
    soft-deleted (`removed_at`). A removed row that comes back is restored (counted modified).

    Args:
        session: The unit of work (flushed, never committed here).
        user_id: Owner of the account.
        provider_id: The account's connection.
        account_id: Our account id (from `upsert_accounts`).
        rows: Every transaction the institution returned for the window. Pass only a complete
            window: a truncated one would soft-delete the rows it missed.
        window_start: Start of the fetched window (inclusive), or None to skip removals.
        window_end: End of the fetched window (inclusive), or None to skip removals.
        now: The write time (default now).
        batch_size: Rows per statement (at most 1000).
        on_batch: Called with the running row count after each batch (lease renewal, progress).

    Returns:
        Added, modified and removed counts.
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
    if (window_start is None) != (window_end is None):
        raise ValueError("pass both window bounds or neither")
    now = now or utcnow()
    unique = list({row.external_id: row for row in rows}.values())
    is_postgres = _dialect(session) == "postgresql"
    added = modified = done = 0
    for batch in _chunks(unique, batch_size):
        known = await _known_rows(
            session, account_id=account_id, external_ids=[r.external_id for r in batch]
        )
        changed = [
            r
            for r in batch
            if r.external_id not in known
            or known[r.external_id][0] != r.content_hash
            or known[r.external_id][1] is not None
        ]
        if changed:
            last = await reserve_change_numbers(session, user_id=user_id, count=len(changed))
            first = last - len(changed) + 1
            values = [
                _transaction_values(
                    r,
                    user_id=user_id,
                    provider_id=provider_id,
                    account_id=account_id,
                    seq=first + i,
                    now=now,
                )
                for i, r in enumerate(changed)
            ]
            result: Sequence[Any]
            if is_postgres:
                result = await _copy_upsert(session, values)
            else:
                result = (await session.execute(_upsert_statement(session), values)).all()
            for row in result:
                inserted = bool(row.inserted) if is_postgres else row.external_id not in known
                if inserted:
                    added += 1
                else:
                    modified += 1
        done += len(batch)
        if on_batch is not None:
            outcome = on_batch(done)
            if outcome is not None:
                await outcome
    removed = 0
    if window_start is not None and window_end is not None:
        removed = await _remove_missing(
            session,
            user_id=user_id,
            account_id=account_id,
            keep={r.external_id for r in unique},
            window_start=window_start,
            window_end=window_end,
            now=now,
            batch_size=batch_size,
        )
    return UpsertCounts(added=added, modified=modified, removed=removed)


async def _remove_missing(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    keep: set[str],
    window_start: datetime,
    window_end: datetime,
    now: datetime,
    batch_size: int,
) -> int:
    table = _transactions.c
    live = (
        await session.execute(
            select(table.id, table.external_id).where(
                table.account_id == account_id,
                table.removed_at.is_(None),
                table.posted_at >= window_start,
                table.posted_at <= window_end,
            )
        )
    ).all()
    gone = [row.id for row in live if row.external_id not in keep]
    return await _soft_delete(session, user_id=user_id, ids=gone, now=now, batch_size=batch_size)


async def _soft_delete(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    ids: Sequence[uuid.UUID],
    now: datetime,
    batch_size: int,
) -> int:
    table = _transactions.c
    removed = 0
    for chunk in _chunks(ids, batch_size):
        last = await reserve_change_numbers(session, user_id=user_id, count=len(chunk))
        first = last - len(chunk) + 1
        stmt = (
            update(_transactions)
            .where(table.id == bindparam("row_id"), table.removed_at.is_(None))
            .values(
                removed_at=bindparam("at"),
                last_modified_at=bindparam("at"),
                change_seq=bindparam("seq"),
            )
        )
        params = [{"row_id": row_id, "at": now, "seq": first + i} for i, row_id in enumerate(chunk)]
        await session.execute(stmt, params)
        removed += len(chunk)
    return removed


async def remove_provider_transactions(
    session: AsyncSession, *, user_id: uuid.UUID, provider_id: uuid.UUID
) -> int:
    """Soft-delete every live transaction of a connection (disconnect with purge).

    Call this before deleting a provider's rows, so change-feed clients learn about the
    removals; a hard delete alone would leave them with rows that no longer exist.

    Returns:
        How many rows were removed.
    """
    table = _transactions.c
    ids = (
        (
            await session.execute(
                select(table.id).where(
                    table.provider_id == provider_id,
                    table.user_id == user_id,
                    table.removed_at.is_(None),
                )
            )
        )
        .scalars()
        .all()
    )
    return await _soft_delete(
        session, user_id=user_id, ids=ids, now=utcnow(), batch_size=DEFAULT_BATCH_SIZE
    )


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "PositionCounts",
    "UpsertCounts",
    "latest_balances",
    "remove_provider_transactions",
    "replace_positions",
    "reserve_change_numbers",
    "snapshot_balances",
    "store_account_snapshots",
    "upsert_accounts",
    "upsert_transactions",
]
