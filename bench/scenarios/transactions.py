"""Transactions list benchmarks: `GET /api/v1/transactions?limit=100&status=posted`.

* `transactions_list_1m_vs_10k`: the same request for a user holding `LARGE_ROWS` transactions
  (dashtam) vs one holding `SMALL_ROWS` (reference, Dashtam too, fresh stores): a keyset page
  over the partial `(user_id, posted_at, id)` index must not get slower with the table.
* `transactions_list_vs_asyncpg`: Dashtam on `LARGE_ROWS` vs a bare app verifying the same JWT
  and running the same SQL with raw asyncpg (`bench.reference.transactions`).

Both are meant for `--backend postgres`. The user, provider connection and accounts go in
through Dashtam's models; transactions are bulk-loaded with asyncpg `COPY` (content hashes are
placeholders: reads never check them), then the table is vacuumed and analysed so autovacuum
does not kick in during the measurement.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from bench.scenarios.auth import RELAXED_LIMITS, login_requests
from bench.scenarios.base import (
    DashtamHttp,
    HttpLoad,
    HttpRequest,
    ReferenceHttp,
    Scenario,
    SetupContext,
    Target,
    bearer,
)
from bench.seeding import create_users
from dashtam.models.financial import Transaction

LIST_QUERY = "limit=100&status=posted"
LIST_PATH = f"/api/v1/transactions?{LIST_QUERY}"
REFERENCE_PATH = f"/transactions?{LIST_QUERY}"

#: Transactions of the benchmark user on the large and the small side.
LARGE_ROWS = 1_000_000
SMALL_ROWS = 10_000
#: Accounts the transactions are spread over (one provider connection).
ACCOUNTS = 3
#: Logins of the benchmark user; their access tokens are sent round-robin.
TOKENS = 8
#: `posted_at` spans this far back from the seeding time.
HISTORY = timedelta(days=5 * 365)
#: Rows per COPY batch.
COPY_BATCH = 50_000

#: `transactions` columns written by `transaction_rows`, in tuple order.
# Derived from the model (one source of truth); the unit tests fail if the row tuples drift.
COPY_COLUMNS: tuple[str, ...] = tuple(
    column.name
    for column in Transaction.__table__.columns  # type: ignore[attr-defined]
)

_TYPES = ("trade", "dividend", "interest", "deposit", "withdrawal", "transfer", "fee", "other")
_SYMBOLS = ("AAPL", "MSFT", "VTI", "BND", "NVDA", "GOOG", "AMZN")
_ZERO = Decimal(0)


def status_for(n: int) -> str:
    """Row `n`'s status: 90 % posted, 5 % pending, 5 % cancelled."""
    bucket = n % 20
    if bucket == 0:
        return "pending"
    if bucket == 1:
        return "cancelled"
    return "posted"


def is_removed(n: int) -> bool:
    """About 1 % of rows are soft-deleted (outside the partial index)."""
    return n % 97 == 96


def transaction_rows(
    count: int,
    *,
    user_id: uuid.UUID,
    provider_id: uuid.UUID,
    account_ids: Sequence[uuid.UUID],
    now: datetime,
    start: int = 0,
    history: timedelta = HISTORY,
) -> Iterator[tuple[object, ...]]:
    """Rows `start` … `count - 1` of a user's `count` transactions, as `COPY_COLUMNS` tuples.

    Row `n` is posted `history * (count - n) / count` before `now` (evenly over the span,
    row `count - 1` the newest), on account `n % len(account_ids)`, with change number `n + 1`.
    """
    if count < 1 or not account_ids:
        raise ValueError("need at least one row and one account")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    step = history / count
    accounts = len(account_ids)
    for n in range(start, count):
        posted_at = now - step * (count - n)
        kind = _TYPES[n % len(_TYPES)]
        trade = kind == "trade"
        symbol = _SYMBOLS[n % len(_SYMBOLS)] if trade else None
        amount = Decimal((n * 7919) % 2_000_000 - 1_000_000).scaleb(-2)
        yield (
            uuid.uuid4(),
            user_id,
            provider_id,
            account_ids[n % accounts],
            f"bench-tx-{n}",
            posted_at,
            posted_at.date(),
            posted_at.date() if trade else None,
            kind,
            None,
            status_for(n),
            f"Bench transaction {n}",
            amount,
            "USD",
            symbol,
            Decimal(n % 50 + 1) if trade else None,
            Decimal(n % 500 + 1).scaleb(-1) if trade else None,
            _ZERO,
            None,
            f"{n:064x}",
            posted_at,
            posted_at,
            now if is_removed(n) else None,
            n + 1,
            n + 1,
        )


async def _owner_objects(
    database_url: str, user_id: uuid.UUID
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A provider connection and `ACCOUNTS` accounts for the user, through Dashtam's models."""
    from dashtam.core.config import Settings
    from dashtam.core.database import create_engine, create_session_factory, session_scope
    from dashtam.core.types import utcnow
    from dashtam.models.financial import Account
    from dashtam.models.provider import Provider, ProviderStatus

    settings = Settings(environment="test", database_url=database_url, log_level="WARNING")
    engine = create_engine(database_url, settings)
    now = utcnow()
    try:
        async with session_scope(create_session_factory(engine)) as session:
            provider = Provider(
                user_id=user_id,
                provider_key="schwab",
                alias="Bench brokerage",
                status=ProviderStatus.ACTIVE.value,
                connected_at=now,
            )
            session.add(provider)
            await session.flush()
            accounts = [
                Account(
                    user_id=user_id,
                    provider_id=provider.id,
                    external_id=f"bench-account-{n}",
                    masked_number=f"...{n:04d}",
                    name=f"Bench account {n}",
                    type="cash",
                )
                for n in range(ACCOUNTS)
            ]
            session.add_all(accounts)
            await session.flush()
            return provider.id, [account.id for account in accounts]
    finally:
        await engine.dispose()


async def seed_transactions(database_url: str, user_id: uuid.UUID, count: int) -> float:
    """Give the user `count` transactions (COPY, then VACUUM ANALYZE); returns seconds taken."""
    import asyncpg
    from sqlalchemy.engine import make_url

    from dashtam.core.types import utcnow

    started = time.monotonic()
    provider_id, account_ids = await _owner_objects(database_url, user_id)
    parsed = make_url(database_url)
    connection = await asyncpg.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
    )
    try:
        rows = transaction_rows(
            count, user_id=user_id, provider_id=provider_id, account_ids=account_ids, now=utcnow()
        )
        while True:
            batch = [row for _, row in zip(range(COPY_BATCH), rows, strict=False)]
            if not batch:
                break
            await connection.copy_records_to_table(
                "transactions", records=batch, columns=COPY_COLUMNS
            )
        await connection.execute("VACUUM ANALYZE transactions")
    finally:
        await connection.close()
    return time.monotonic() - started


def list_load(rows: int) -> DashtamHttp:
    """Dashtam with one user holding `rows` transactions, listed through `TOKENS` logins."""

    def hook(ctx: SetupContext) -> HttpLoad:
        (user,) = asyncio.run(create_users(ctx.database_url, ctx.env, count=1, prefix=f"tx{rows}"))
        seconds = asyncio.run(seed_transactions(ctx.database_url, user.id, rows))
        (ctx.workdir / f"seed-{rows}.txt").write_text(f"{rows} rows seeded in {seconds:.1f} s\n")
        print(f"  seeded {rows:,} transactions in {seconds:.1f} s", flush=True)
        tokens = []
        with ctx.client() as client:
            for request in login_requests([user.email] * TOKENS):
                response = client.post(
                    request.path, content=request.body, headers=dict(request.headers)
                )
                response.raise_for_status()
                tokens.append(response.json()["access_token"])
        ctx.state["tokens"] = tokens
        return HttpLoad(tuple(HttpRequest("GET", LIST_PATH, headers=bearer(t)) for t in tokens))

    return DashtamHttp(load=hook, env=RELAXED_LIMITS)


def reference_load(ctx: SetupContext) -> HttpLoad:
    """The same tokens against the bare app (same database, same seeded user)."""
    return HttpLoad(
        tuple(HttpRequest("GET", REFERENCE_PATH, headers=bearer(t)) for t in ctx.state["tokens"])
    )


SCENARIOS = (
    Scenario(
        name="transactions_list_1m_vs_10k",
        description=f"GET /api/v1/transactions?{LIST_QUERY} for a user with {LARGE_ROWS:,} "
        f"transactions (dashtam) vs {SMALL_ROWS:,} (reference)",
        subject=list_load(LARGE_ROWS),
        reference=list_load(SMALL_ROWS),
        target=Target(max_p50_ratio=1.5),
        notes=f"both sides are Dashtam on fresh stores; {TOKENS} logins of the user round-robin; "
        "RATE_LIMIT_USER raised via env; rows over 5 years, 90 % posted, ~1 % soft-deleted; "
        "meant for --backend postgres",
    ),
    Scenario(
        name="transactions_list_vs_asyncpg",
        description=f"GET /api/v1/transactions?{LIST_QUERY} ({LARGE_ROWS:,} rows) vs a bare app "
        "verifying the same JWT and running the same SQL with raw asyncpg",
        subject=list_load(LARGE_ROWS),
        reference=ReferenceHttp(app="bench.reference.transactions:create_app", load=reference_load),
        target=Target(min_rps_ratio=0.5),
        notes=f"{TOKENS} logins of one user round-robin; RATE_LIMIT_USER raised via env; the "
        "reference skips Dashtam's middleware, session check, rate limit and ORM session but "
        "validates the same TransactionOut rows and signs the same cursor; postgres only",
    ),
)
