"""SQL over `sync_runs`: the database half of "one sync per provider at a time".

Every state change is one atomic statement with a guard, so races resolve in the database:

* `create_or_get_active` inserts a queued run unless the provider already has a queued or
  running one (the partial unique index `ux_sync_runs_provider_id_active` decides; the loser
  reads the winner's row);
* `claim` moves a run to `running` and bumps `attempt` only if it is queued, or running with
  an expired lease (its worker is presumed dead);
* `renew`, `finish` and `release` are fenced by `attempt`: a worker whose lease was taken over
  can no longer write to the run, and because the engine renews in the same transaction as
  each window's rows, it can no longer write rows either.

Functions take the caller's session and only flush.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.models.financial import SyncRun, SyncStatus, SyncTrigger
from dashtam.models.provider import Provider

_runs = SyncRun.__table__  # type: ignore[attr-defined]
_providers = Provider.__table__  # type: ignore[attr-defined]

ACTIVE_STATUSES = (SyncStatus.QUEUED.value, SyncStatus.RUNNING.value)
#: Must match the predicate of the partial unique index, or ON CONFLICT cannot infer it.
_ACTIVE_PREDICATE = text("status IN ('queued', 'running')")
ERROR_MESSAGE_MAX = 500


@dataclass(frozen=True)
class Counts:
    """What a run has written so far."""

    accounts: int = 0
    added: int = 0
    modified: int = 0
    removed: int = 0


@dataclass(frozen=True)
class Claim:
    """A run this worker now owns, and the provider facts the engine needs."""

    run_id: uuid.UUID
    attempt: int
    trigger: str
    user_id: uuid.UUID
    provider_id: uuid.UUID
    provider_key: str
    provider_status: str
    last_synced_at: datetime | None


def _insert(session: AsyncSession, table: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def get_active_run(session: AsyncSession, *, provider_id: uuid.UUID) -> SyncRun | None:
    """The provider's queued or running run, if any."""
    result = await session.execute(
        select(SyncRun).where(
            SyncRun.provider_id == provider_id,  # type: ignore[arg-type]
            SyncRun.status.in_(ACTIVE_STATUSES),  # type: ignore[attr-defined]
        )
    )
    return result.scalars().first()


async def create_or_get_active(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    provider_id: uuid.UUID,
    trigger: SyncTrigger,
    now: datetime,
) -> tuple[SyncRun, bool]:
    """Queue a run for the provider, or return the one already queued or running.

    One `INSERT … ON CONFLICT DO NOTHING` against the partial unique index: two triggers at
    the same moment yield one run on both backends (on PostgreSQL the second insert waits for
    the first transaction, then does nothing; SQLite has a single writer).

    Returns:
        The active run and whether this call created it.
    """
    new_id = uuid.uuid4()
    stmt = (
        _insert(session, _runs)
        .values(
            id=new_id,
            user_id=user_id,
            provider_id=provider_id,
            trigger=trigger.value,
            status=SyncStatus.QUEUED.value,
            attempt=0,
            accounts=0,
            added=0,
            modified=0,
            removed=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[_runs.c.provider_id], index_where=_ACTIVE_PREDICATE)
        .returning(_runs.c.id)
    )
    inserted = (await session.execute(stmt)).scalar_one_or_none()
    run = await get_active_run(session, provider_id=provider_id)
    if run is None:
        # The winner finished between our insert and our read: extremely rare; ask again.
        return await create_or_get_active(
            session, user_id=user_id, provider_id=provider_id, trigger=trigger, now=now
        )
    return run, inserted is not None and run.id == new_id


async def get_run(session: AsyncSession, *, run_id: uuid.UUID) -> SyncRun | None:
    """A run by id (no ownership check)."""
    return await session.get(SyncRun, run_id)


async def get_run_for_user(
    session: AsyncSession, *, run_id: uuid.UUID, user_id: uuid.UUID
) -> SyncRun | None:
    """A run by id, only if it belongs to `user_id`."""
    result = await session.execute(
        select(SyncRun).where(
            SyncRun.id == run_id,  # type: ignore[arg-type]
            SyncRun.user_id == user_id,  # type: ignore[arg-type]
        )
    )
    return result.scalars().first()


async def list_runs(
    session: AsyncSession,
    *,
    provider_id: uuid.UUID,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[SyncRun]:
    """The provider's runs, newest first, keyset-paged on (created_at, id)."""
    stmt = select(SyncRun).where(SyncRun.provider_id == provider_id)  # type: ignore[arg-type]
    if before is not None:
        created, run_id = before
        stmt = stmt.where(
            or_(
                _runs.c.created_at < created,
                and_(_runs.c.created_at == created, _runs.c.id < run_id),
            )
        )
    stmt = stmt.order_by(_runs.c.created_at.desc(), _runs.c.id.desc()).limit(limit)
    return list((await session.execute(stmt)).scalars().all())


async def claim(
    session: AsyncSession, *, run_id: uuid.UUID, now: datetime, lease: timedelta
) -> Claim | None:
    """Take a run: queued, or running with an expired lease. None when someone else has it."""
    stmt = (
        update(_runs)
        .where(
            _runs.c.id == run_id,
            or_(
                _runs.c.status == SyncStatus.QUEUED.value,
                and_(
                    _runs.c.status == SyncStatus.RUNNING.value,
                    _runs.c.lease_expires_at < now,
                ),
            ),
        )
        .values(
            status=SyncStatus.RUNNING.value,
            attempt=_runs.c.attempt + 1,
            started_at=func.coalesce(_runs.c.started_at, now),
            lease_expires_at=now + lease,
            updated_at=now,
        )
        .returning(_runs.c.attempt, _runs.c.trigger, _runs.c.provider_id, _runs.c.user_id)
    )
    row = (await session.execute(stmt)).first()
    if row is None:
        return None
    provider = (
        await session.execute(
            select(
                _providers.c.provider_key, _providers.c.status, _providers.c.last_synced_at
            ).where(_providers.c.id == row.provider_id)
        )
    ).first()
    if provider is None:
        return None
    return Claim(
        run_id=run_id,
        attempt=row.attempt,
        trigger=row.trigger,
        user_id=row.user_id,
        provider_id=row.provider_id,
        provider_key=provider.provider_key,
        provider_status=provider.status,
        last_synced_at=provider.last_synced_at,
    )


def _fenced(claim_: Claim) -> Any:
    return and_(
        _runs.c.id == claim_.run_id,
        _runs.c.status == SyncStatus.RUNNING.value,
        _runs.c.attempt == claim_.attempt,
    )


async def renew(
    session: AsyncSession,
    claim_: Claim,
    *,
    now: datetime,
    lease: timedelta,
    counts: Counts | None = None,
) -> bool:
    """Extend our lease (and publish progress counts). False: the run is no longer ours."""
    values: dict[str, Any] = {"lease_expires_at": now + lease, "updated_at": now}
    if counts is not None:
        values.update(
            accounts=counts.accounts,
            added=counts.added,
            modified=counts.modified,
            removed=counts.removed,
        )
    stmt = update(_runs).where(_fenced(claim_)).values(**values).returning(_runs.c.id)
    return (await session.execute(stmt)).first() is not None


async def release(session: AsyncSession, claim_: Claim, *, now: datetime) -> bool:
    """Give a claimed run back to the queue (we could not take the provider's lock)."""
    stmt = (
        update(_runs)
        .where(_fenced(claim_))
        .values(status=SyncStatus.QUEUED.value, lease_expires_at=None, updated_at=now)
        .returning(_runs.c.id)
    )
    return (await session.execute(stmt)).first() is not None


async def finish(
    session: AsyncSession,
    claim_: Claim,
    *,
    status: SyncStatus,
    now: datetime,
    counts: Counts,
    error_code: str | None = None,
    error_message: str | None = None,
    window: tuple[datetime | None, datetime | None] = (None, None),
) -> bool:
    """Record the outcome. False when the run was taken over meanwhile (nothing written)."""
    stmt = (
        update(_runs)
        .where(_fenced(claim_))
        .values(
            status=status.value,
            finished_at=now,
            lease_expires_at=None,
            updated_at=now,
            accounts=counts.accounts,
            added=counts.added,
            modified=counts.modified,
            removed=counts.removed,
            error_code=error_code,
            error_message=(error_message or None) and error_message[:ERROR_MESSAGE_MAX],
            window_start=window[0],
            window_end=window[1],
        )
        .returning(_runs.c.id)
    )
    return (await session.execute(stmt)).first() is not None


async def fail_unclaimed(
    session: AsyncSession,
    *,
    run_id: uuid.UUID,
    now: datetime,
    error_code: str,
    error_message: str,
) -> bool:
    """Fail a queued run without running it (its provider can no longer sync)."""
    stmt = (
        update(_runs)
        .where(_runs.c.id == run_id, _runs.c.status == SyncStatus.QUEUED.value)
        .values(
            status=SyncStatus.FAILED.value,
            finished_at=now,
            updated_at=now,
            error_code=error_code,
            error_message=error_message[:ERROR_MESSAGE_MAX],
        )
        .returning(_runs.c.id)
    )
    return (await session.execute(stmt)).first() is not None


@dataclass(frozen=True)
class Requeued:
    """A run the scheduler handed back to the queue (or gave up on)."""

    run_id: uuid.UUID
    provider_id: uuid.UUID
    abandoned: bool


async def requeue_expired(
    session: AsyncSession, *, now: datetime, max_attempts: int, limit: int = 500
) -> list[Requeued]:
    """Runs whose lease expired: back to `queued`, or `failed` after `max_attempts` claims.

    Each transition is guarded by the same expired-lease condition, so two schedulers (or a
    late heartbeat) cannot both act on one run.
    """
    expired = (
        await session.execute(
            select(_runs.c.id, _runs.c.provider_id, _runs.c.attempt)
            .where(_runs.c.status == SyncStatus.RUNNING.value, _runs.c.lease_expires_at < now)
            .limit(limit)
        )
    ).all()
    out: list[Requeued] = []
    for run_id, provider_id, attempt in expired:
        guard = and_(
            _runs.c.id == run_id,
            _runs.c.status == SyncStatus.RUNNING.value,
            _runs.c.lease_expires_at < now,
            _runs.c.attempt == attempt,
        )
        abandoned = attempt >= max_attempts
        values: dict[str, Any] = {"lease_expires_at": None, "updated_at": now}
        if abandoned:
            values.update(
                status=SyncStatus.FAILED.value,
                finished_at=now,
                error_code="abandoned",
                error_message=(
                    f"The sync stopped responding {attempt} times (worker killed or stuck) "
                    "and was given up; the next scheduled sync will try again."
                ),
            )
        else:
            values["status"] = SyncStatus.QUEUED.value
        stmt = update(_runs).where(guard).values(**values).returning(_runs.c.id)
        if (await session.execute(stmt)).first() is not None:
            out.append(Requeued(run_id, provider_id, abandoned))
    return out


async def touch_stale_queued(
    session: AsyncSession, *, now: datetime, older_than: timedelta, limit: int = 500
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Queued runs nobody picked up for a while (a lost message): touch and return them.

    Touching (`updated_at = now`) keeps the next tick from dispatching them again at once.
    """
    cutoff = now - older_than
    stmt = (
        update(_runs)
        .where(_runs.c.status == SyncStatus.QUEUED.value, _runs.c.updated_at < cutoff)
        .values(updated_at=now)
        .returning(_runs.c.id, _runs.c.provider_id)
    )
    rows = (await session.execute(stmt)).all()
    return [(row.id, row.provider_id) for row in rows[:limit]]


async def consecutive_failures(session: AsyncSession, *, provider_id: uuid.UUID) -> int:
    """Failed runs of the provider since its last successful one (at most 20 looked at)."""
    recent: Sequence[str] = (
        (
            await session.execute(
                select(_runs.c.status)
                .where(
                    _runs.c.provider_id == provider_id,
                    _runs.c.status.in_((SyncStatus.SUCCEEDED.value, SyncStatus.FAILED.value)),
                )
                .order_by(_runs.c.created_at.desc(), _runs.c.id.desc())
                .limit(20)
            )
        )
        .scalars()
        .all()
    )
    count = 0
    for status in recent:
        if status != SyncStatus.FAILED.value:
            break
        count += 1
    return count


async def set_provider_schedule(
    session: AsyncSession,
    *,
    provider_id: uuid.UUID,
    now: datetime,
    next_sync_at: datetime | None,
    last_synced_at: datetime | None = None,
    last_error: str | None = None,
    clear_error: bool = False,
) -> None:
    """Record the provider's sync times (and the last sync error shown to its owner)."""
    values: dict[str, Any] = {"next_sync_at": next_sync_at, "updated_at": now}
    if last_synced_at is not None:
        values["last_synced_at"] = last_synced_at
    if last_error is not None:
        values["last_error"] = last_error[:500]
    elif clear_error:
        values["last_error"] = None
    await session.execute(update(_providers).where(_providers.c.id == provider_id).values(**values))
