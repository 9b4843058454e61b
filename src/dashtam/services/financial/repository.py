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

import json
import os
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import (
    String,
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
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.types import ExactDecimal, utcnow
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
from dashtam.providers.base import RawPayload

#: Rows per upsert statement: 25 columns x 1000 rows stays under both SQLite's variable limit
#: (32766) and the PostgreSQL wire protocol's 32767 parameters per statement.
DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 1000
#: PostgreSQL writes with `COPY`, which has no parameter limit: by default a whole window is
#: one batch, so building and encoding its records overlaps the server inserting them (the
#: rows stream in as they are made) instead of alternating with it once per 1000 rows.
POSTGRES_BATCH_SIZE = 20_000

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

#: Column order of the PostgreSQL `COPY` records (`_copy_records` builds tuples in this order).
_COPY_COLUMNS: tuple[str, ...] = (
    "id",
    "user_id",
    "provider_id",
    "account_id",
    "external_id",
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
    "first_seen_at",
    "last_modified_at",
    "removed_at",
    "created_seq",
    "change_seq",
)
if set(_COPY_COLUMNS) != {c.name for c in _transactions.columns}:  # pragma: no cover
    raise RuntimeError("_COPY_COLUMNS must name every column of transactions exactly once")


def _json_default(value: Any) -> Any:
    """Exact decimals become decimal strings; other mappings become plain objects."""
    if type(value) is Decimal or isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


#: One C-accelerated encoder for every raw payload: no intermediate JSON-safe copy is made
#: (decimals are turned into strings on the way out), and non-finite floats are refused.
_RAW_ENCODER = json.JSONEncoder(
    default=_json_default, ensure_ascii=False, separators=(",", ":"), allow_nan=False
)
#: The same encoder's C core, made once: `JSONEncoder.encode` builds it again on every call,
#: a sixth of the cost for a payload of a few hundred bytes. No cycle check (markers=None):
#: decoded JSON cannot be circular.
_make_c_encoder: Callable[..., Callable[[Any, int], list[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)
_RAW_C_ENCODER = (
    _make_c_encoder(
        None, _json_default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    if _make_c_encoder is not None
    else None
)


def raw_payload_json(raw: Mapping[str, Any]) -> str:
    """A transaction's raw payload as the JSON text that is stored.

    A `RawPayload` is stored as the scrubbed text it was decoded from (the institution's own
    exact numbers; `jsonb` keeps them as exact `numeric`). Any other payload is encoded with
    decimals as exact strings.

    Args:
        raw: The payload as mapped (decoded JSON; numbers may be `Decimal`).

    Returns:
        Compact JSON text.

    Raises:
        ValueError: The payload holds a non-finite float.
        TypeError: The payload holds something JSON cannot represent.
    """
    if type(raw) is RawPayload:
        return raw.source
    return encoded_payload(raw)


def encoded_payload(raw: Mapping[str, Any]) -> str:
    """`raw` encoded as compact JSON, decimals as exact strings (never its source text).

    Raises:
        ValueError: The payload holds a non-finite float.
        TypeError: The payload holds something JSON cannot represent.
    """
    if _RAW_C_ENCODER is None:  # pragma: no cover - CPython always has the C encoder
        return _RAW_ENCODER.encode(raw)
    return "".join(_RAW_C_ENCODER(raw, 0))


def _new_ids(count: int) -> list[uuid.UUID]:
    """`count` random (version 4) UUIDs from one call to the OS random source.

    `uuid4()` asks the OS for 16 bytes per id; one request per batch is measurably cheaper
    when the machine is busy, and the ids are just as random.
    """
    data = os.urandom(16 * count)
    return [uuid.UUID(bytes=data[i : i + 16], version=4) for i in range(0, 16 * count, 16)]


def _transaction_values(
    row: TransactionData,
    *,
    row_id: uuid.UUID,
    user_id: uuid.UUID,
    provider_id: uuid.UUID,
    account_id: uuid.UUID,
    seq: int,
    now: datetime,
) -> dict[str, Any]:
    """One row as parameters of the SQLAlchemy upsert (the SQLite path)."""
    return {
        "id": row_id,
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
        # The JSON column serialises with the engine's encoder, which knows no Decimal (and
        # would read a source text's numbers as floats): decimals go in as exact strings.
        "raw": None if row.raw is None else json.loads(encoded_payload(row.raw)),
        "content_hash": row.content_hash,
        "first_seen_at": now,
        "last_modified_at": now,
        "removed_at": None,
        "created_seq": seq,
        "change_seq": seq,
    }


def _copy_records(
    dialect: Any,
    rows: Sequence[TransactionData],
    *,
    user_id: uuid.UUID,
    provider_id: uuid.UUID,
    account_id: uuid.UUID,
    first_seq: int,
    now: datetime,
) -> Iterator[tuple[Any, ...]]:
    """PostgreSQL: rows as `COPY` records in `_COPY_COLUMNS` order, made as they are sent.

    Lazily, so `COPY` streams each chunk to the server while the next is built. Decimals and
    timestamps go through their column types' bind processors, exactly as an INSERT would
    (quantised to 8 places, finite, aware UTC); the raw payload is serialised once, straight
    from the mapped payload; constants are processed once per batch.
    """
    columns = _transactions.c
    processor = columns.amount.type.dialect_impl(dialect).bind_processor(dialect)
    assert processor is not None
    quantum = ExactDecimal._quantum

    def money(value: Any) -> Any:
        # What the column type's processor does for a finite Decimal (quantise to 8 places),
        # without its two wrapper calls; anything else goes through the processor itself.
        if type(value) is Decimal and value.is_finite():
            return value.quantize(quantum)
        return processor(value)

    moment = columns.posted_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert moment is not None
    stamp = moment(now)
    encode = raw_payload_json
    ids = _new_ids(len(rows))
    return (
        (
            ids[i],
            user_id,
            provider_id,
            account_id,
            r.external_id,
            # Already aware UTC (the usual case): the processor would return it unchanged.
            r.posted_at if r.posted_at.tzinfo is UTC else moment(r.posted_at),
            r.trade_date,
            r.settlement_date,
            r.type.value,
            r.subtype,
            r.status.value,
            r.description,
            money(r.amount),
            r.currency,
            r.symbol,
            None if r.quantity is None else money(r.quantity),
            None if r.price is None else money(r.price),
            money(r.fees),
            None if r.raw is None else encode(r.raw),
            r.content_hash,
            stamp,
            stamp,
            None,
            first_seq + i,
            first_seq + i,
        )
        for i, r in enumerate(rows)
    )


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


#: Per-transaction staging table of the PostgreSQL upsert of changed rows (dropped at commit).
_STAGE = "transactions_stage"


async def _driver(session: AsyncSession) -> Any:
    """The session's asyncpg connection (inside the session's transaction)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def _copy_insert(session: AsyncSession, records: Iterable[tuple[Any, ...]]) -> None:
    """PostgreSQL: rows known to be new go straight into the table with one `COPY`.

    The caller holds the account's row lock and looked the ids up under it, so no other
    writer can have inserted one of them meanwhile; if anything else did, the unique
    constraint fails the unit of work (rolled back whole, rerun later) rather than duplicating.
    """
    driver = await _driver(session)
    await driver.copy_records_to_table("transactions", records=records, columns=_COPY_COLUMNS)


async def _copy_upsert(session: AsyncSession, records: Iterable[tuple[Any, ...]]) -> Sequence[Any]:
    """PostgreSQL: changed rows via `COPY` into a temporary table and one `INSERT … SELECT`.

    Same `ON CONFLICT … WHERE` and `RETURNING` as the SQLite path, without binding and planning
    thousands of parameters. It runs on the session's connection, inside its transaction, so
    the lease renewal and the write still commit or roll back together.
    """
    await session.execute(
        text(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} "
            "(LIKE transactions INCLUDING DEFAULTS) ON COMMIT DROP"
        )
    )
    driver = await _driver(session)
    await driver.copy_records_to_table(_STAGE, records=records, columns=_COPY_COLUMNS)
    stage = table(_STAGE, *(column(name) for name in _COPY_COLUMNS))
    stmt = postgresql.insert(_transactions).from_select(
        list(_COPY_COLUMNS), select(*(stage.c[name] for name in _COPY_COLUMNS))
    )
    rows = (await session.execute(_on_conflict(session, stmt))).all()
    # Empty the stage for the next batch of this transaction (cheap on a temporary table).
    await session.execute(text(f"TRUNCATE {_STAGE}"))
    return rows


#: What the table holds for one external id before a write:
#: (row id, content hash, removed_at, posted_at).
_Known = tuple[uuid.UUID, str, datetime | None, datetime]


def _lookup_by_ids(account_id: uuid.UUID, external_ids: list[str]) -> Any:
    """PostgreSQL: one unique-index probe per external id, passed as one array parameter.

    Written as `unnest(:ids) CROSS JOIN LATERAL (… LIMIT 1)` so the plan is a nested loop of
    index probes whatever the statistics say. During a first import they are stale (the table
    was never analysed), and the plain `external_id = ANY(:ids)` was planned as a scan of
    every row of the account plus a filter: 150 ms per window at 100k rows, against 3 ms.
    """
    t = _transactions.c
    ids = (
        func.unnest(bindparam("external_ids", external_ids, type_=postgresql.ARRAY(String())))
        .table_valued("external_id", name="wanted")
        .render_derived()
    )
    probe = (
        select(t.id, t.content_hash, t.removed_at, t.posted_at)
        .where(t.account_id == account_id, t.external_id == ids.c.external_id)
        .limit(1)
        .lateral("known")
    )
    return select(
        ids.c.external_id, probe.c.id, probe.c.content_hash, probe.c.removed_at, probe.c.posted_at
    ).select_from(ids.join(probe, true()))


async def _existing_rows(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    external_ids: list[str],
    window: tuple[datetime, datetime] | None,
    batch_size: int,
) -> dict[str, _Known]:
    """The account's rows that the write must know about, read once before writing.

    These are the rows with one of `external_ids` (to tell new, changed and unchanged rows
    apart) and, for a complete window, the live rows posted inside it (the candidates for
    removal). A first import finds nothing here, so it never reads back what it writes.
    """
    t = _transactions.c
    columns = (t.external_id, t.id, t.content_hash, t.removed_at, t.posted_at)
    postgres = _dialect(session) == "postgresql"
    queries: list[Any] = []
    if postgres:
        queries.append(_lookup_by_ids(account_id, external_ids))
    else:
        # SQLite: bounded IN lists (its variable limit).
        queries.extend(
            select(*columns).where(t.account_id == account_id, t.external_id.in_(chunk))
            for chunk in _chunks(external_ids, batch_size)
        )
    if window is not None:
        queries.append(
            select(*columns).where(
                t.account_id == account_id,
                t.removed_at.is_(None),
                t.posted_at >= window[0],
                t.posted_at <= window[1],
            )
        )
    if postgres:
        # asyncpg prepares statements, and after five runs PostgreSQL may switch to a generic
        # plan made while the table looked empty: a sequential scan per lookup, quadratic over
        # a large first import (measured: 6 s per batch at 100k rows). A custom plan sees the
        # table's real size and probes the indexes. Only these statements get it: custom plans
        # for every foreign-key check of the writes cost several times more.
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    found: dict[str, _Known] = {}
    for query in queries:
        result = await session.execute(query)
        found.update((row[0], tuple(row[1:])) for row in result)
    if postgres:
        await session.execute(text("SET LOCAL plan_cache_mode = auto"))
    return found


async def _lock_account(session: AsyncSession, account_id: uuid.UUID) -> None:
    """PostgreSQL: serialise writers of one account's transactions until commit.

    The pre-write lookup is then exact (no other writer can insert one of its ids before we
    do), which is what lets new rows skip the upsert. `FOR NO KEY UPDATE` does not block the
    foreign-key checks of inserts referencing the account. SQLite holds its only write lock
    from `BEGIN IMMEDIATE` already.
    """
    if _dialect(session) == "postgresql":
        await session.execute(
            select(_accounts.c.id)
            .where(_accounts.c.id == account_id)
            .with_for_update(key_share=True)  # FOR NO KEY UPDATE
        )


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
    batch_size: int | None = None,
    on_batch: BatchHook | None = None,
) -> UpsertCounts:
    """Upsert one account's transactions of one fetched window; soft-delete what vanished.

    One lookup first reads what the table holds for these external ids (and, for a complete
    window, its live rows inside the window), under the account's row lock on PostgreSQL.
    Then, per batch, only new or changed rows are numbered (one counter bump) and written:
    on PostgreSQL new rows with one `COPY` into the table and changed or reappearing ones
    through a staged `INSERT … ON CONFLICT (account_id, external_id) DO UPDATE … WHERE
    content_hash IS DISTINCT FROM excluded.content_hash OR removed_at IS NOT NULL`; on SQLite
    both with that upsert. Finally every live row of the account with `window_start <=
    posted_at <= window_end` that did not come back is soft-deleted (`removed_at`). A removed
    row that comes back is restored (counted modified). Unchanged rows are not written at all.

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
        batch_size: Rows per write, at most 1000 (default: 1000 on SQLite, the whole window up
            to `POSTGRES_BATCH_SIZE` on PostgreSQL).
        on_batch: Called with the running row count after each batch (lease renewal, progress).

    Returns:
        Added, modified and removed counts.
    """
    if batch_size is None:
        postgres = _dialect(session) == "postgresql"
        batch_size = POSTGRES_BATCH_SIZE if postgres else DEFAULT_BATCH_SIZE
    elif not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
    if (window_start is None) != (window_end is None):
        raise ValueError("pass both window bounds or neither")
    now = now or utcnow()
    window = (window_start, window_end) if window_start and window_end else None
    unique = list({row.external_id: row for row in rows}.values())
    if not unique and window is None:
        return UpsertCounts()
    await _lock_account(session, account_id)
    existing = await _existing_rows(
        session,
        account_id=account_id,
        external_ids=[r.external_id for r in unique],
        window=window,
        batch_size=batch_size,
    )
    added = modified = done = 0
    for batch in _chunks(unique, batch_size):
        fresh: list[TransactionData] = []
        changed: list[TransactionData] = []
        for r in batch:
            known = existing.get(r.external_id)
            if known is None:
                fresh.append(r)
            elif known[1] != r.content_hash or known[2] is not None:
                changed.append(r)
        if fresh or changed:
            batch_added, batch_modified = await _write_batch(
                session,
                fresh,
                changed,
                user_id=user_id,
                provider_id=provider_id,
                account_id=account_id,
                now=now,
            )
            added += batch_added
            modified += batch_modified
        done += len(batch)
        if on_batch is not None:
            outcome = on_batch(done)
            if outcome is not None:
                await outcome
    removed = 0
    if window is not None:
        keep = {r.external_id for r in unique}
        lo, hi = window
        # The lookup ran before the writes, which only touched rows in `keep`: it is still
        # the state of every other row.
        gone = [
            known[0]
            for external_id, known in existing.items()
            if known[2] is None and lo <= known[3] <= hi and external_id not in keep
        ]
        removed = await _soft_delete(
            session, user_id=user_id, ids=gone, now=now, batch_size=batch_size
        )
    return UpsertCounts(added=added, modified=modified, removed=removed)


async def _write_batch(
    session: AsyncSession,
    fresh: list[TransactionData],
    changed: list[TransactionData],
    *,
    user_id: uuid.UUID,
    provider_id: uuid.UUID,
    account_id: uuid.UUID,
    now: datetime,
) -> tuple[int, int]:
    """Number and write one batch's new and changed rows; return (added, modified)."""
    ordered = fresh + changed
    last = await reserve_change_numbers(session, user_id=user_id, count=len(ordered))
    first = last - len(ordered) + 1
    if _dialect(session) == "postgresql":
        dialect = session.get_bind().dialect
        ids = {"user_id": user_id, "provider_id": provider_id, "account_id": account_id}
        added = modified = 0
        if fresh:
            await _copy_insert(
                session, _copy_records(dialect, fresh, first_seq=first, now=now, **ids)
            )
            added = len(fresh)
        if changed:
            records = _copy_records(dialect, changed, first_seq=first + len(fresh), now=now, **ids)
            for row in await _copy_upsert(session, records):
                if row.inserted:  # deleted by a purge since the lookup: inserted again
                    added += 1
                else:
                    modified += 1
        return added, modified
    values = [
        _transaction_values(
            r,
            row_id=row_id,
            user_id=user_id,
            provider_id=provider_id,
            account_id=account_id,
            seq=first + i,
            now=now,
        )
        for i, (r, row_id) in enumerate(zip(ordered, _new_ids(len(ordered)), strict=True))
    ]
    written = {
        row.external_id for row in (await session.execute(_upsert_statement(session), values)).all()
    }
    added = sum(1 for r in fresh if r.external_id in written)
    return added, len(written) - added


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
