"""The scheduler's periodic work, run once per tick by a job (`jobs.tasks`).

One tick, every step idempotent (two schedulers ticking at once do no harm, and a KV key
normally stops the second one anyway):

1. runs whose lease expired (worker killed) go back to `queued` and are dispatched again —
   this also closes the Redis Streams redelivery gap — or fail after too many attempts;
2. queued runs nobody picked up for a while (a dispatch lost with a restarted process) are
   dispatched again;
3. active connections that are due (`next_sync_at`, or never synced) get a scheduled run, at
   most as many per tick as the institution's request budget allows, oldest due first;
4. access tokens that expire before the next tick are refreshed ahead (which also finds dead
   refresh tokens early);
5. reauth notices are emailed (once per connection and login).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, select

from dashtam.core.database import after_commit, session_scope
from dashtam.core.logging import log_event
from dashtam.core.state import AppResources
from dashtam.models.financial import SyncRun, SyncTrigger
from dashtam.models.provider import Provider, ProviderStatus, ProviderToken
from dashtam.services.sync import runs
from dashtam.services.sync.notices import send_due_notices
from dashtam.services.sync.service import dispatch

logger = logging.getLogger("dashtam.sync.scheduler")

_providers = Provider.__table__  # type: ignore[attr-defined]
_tokens = ProviderToken.__table__  # type: ignore[attr-defined]
_runs = SyncRun.__table__  # type: ignore[attr-defined]

RefreshKicker = Callable[[uuid.UUID], Awaitable[None]]


@dataclass(frozen=True)
class TickReport:
    """What one tick did (logged, and asserted on in tests)."""

    requeued: int = 0
    abandoned: int = 0
    redispatched: int = 0
    scheduled: int = 0
    refreshes: int = 0
    notices: int = 0


def syncs_per_tick(resources: AppResources) -> int:
    """How many scheduled syncs one tick may start without overrunning the request budget.

    The budget (Schwab: 120 requests/minute per app) is shared by every connection; a
    scheduled sync is estimated at `SYNC_REQUESTS_ESTIMATE` requests.
    """
    settings = resources.settings
    per_tick = settings.schwab_requests_per_minute * settings.scheduler_tick_seconds / 60
    return max(1, int(per_tick // settings.sync_requests_estimate))


async def schedule_due(resources: AppResources, *, now: datetime, limit: int) -> int:
    """Queue scheduled runs for due active connections (no run already active)."""
    interval = timedelta(minutes=resources.settings.sync_interval_minutes)
    active_run = exists().where(
        _runs.c.provider_id == _providers.c.id, _runs.c.status.in_(runs.ACTIVE_STATUSES)
    )
    due = or_(
        _providers.c.next_sync_at <= now,
        and_(
            _providers.c.next_sync_at.is_(None),
            or_(
                _providers.c.last_synced_at.is_(None),
                _providers.c.last_synced_at <= now - interval,
            ),
        ),
    )
    stmt = (
        select(_providers.c.id, _providers.c.user_id)
        .where(_providers.c.status == ProviderStatus.ACTIVE.value, due, ~active_run)
        .order_by(_providers.c.next_sync_at.asc().nulls_first(), _providers.c.id)
        .limit(limit)
    )
    scheduled = 0
    async with session_scope(resources.session_factory) as session:
        for provider_id, user_id in (await session.execute(stmt)).all():
            run, created = await runs.create_or_get_active(
                session,
                user_id=user_id,
                provider_id=provider_id,
                trigger=SyncTrigger.SCHEDULED,
                now=now,
            )
            if created:
                scheduled += 1
                after_commit(session, _dispatcher(resources, run.id, provider_id))
    return scheduled


def _dispatcher(
    resources: AppResources, run_id: uuid.UUID, provider_id: uuid.UUID
) -> Callable[[], Awaitable[bool]]:
    return lambda: dispatch(resources, run_id, provider_id)


async def tokens_to_refresh(
    resources: AppResources, *, now: datetime, within: timedelta, limit: int = 200
) -> list[uuid.UUID]:
    """Active connections whose access token expires within `within` and can be refreshed."""
    stmt = (
        select(_providers.c.id)
        .select_from(_providers.join(_tokens, _tokens.c.provider_id == _providers.c.id))
        .where(
            _providers.c.status == ProviderStatus.ACTIVE.value,
            _tokens.c.refresh_token_encrypted.is_not(None),
            _tokens.c.access_expires_at.is_not(None),
            _tokens.c.access_expires_at <= now + within,
            or_(_tokens.c.refresh_expires_at.is_(None), _tokens.c.refresh_expires_at > now),
        )
        .order_by(_tokens.c.access_expires_at)
        .limit(limit)
    )
    async with session_scope(resources.session_factory) as session:
        return list((await session.execute(stmt)).scalars().all())


async def run_tick(
    resources: AppResources,
    *,
    now: datetime,
    kick_refresh: RefreshKicker | None = None,
) -> TickReport:
    """One scheduler tick (see the module docstring)."""
    settings = resources.settings
    async with session_scope(resources.session_factory) as session:
        requeued = await runs.requeue_expired(
            session, now=now, max_attempts=settings.sync_max_attempts
        )
        stale = await runs.touch_stale_queued(
            session, now=now, older_than=timedelta(seconds=settings.sync_queued_stale_seconds)
        )
    for item in requeued:
        if not item.abandoned:
            await dispatch(resources, item.run_id, item.provider_id)
    for run_id, provider_id in stale:
        await dispatch(resources, run_id, provider_id)
    scheduled = await schedule_due(resources, now=now, limit=syncs_per_tick(resources))
    refreshes = 0
    if kick_refresh is not None:
        within = timedelta(
            seconds=settings.token_refresh_margin_seconds + 2 * settings.scheduler_tick_seconds
        )
        for provider_id in await tokens_to_refresh(resources, now=now, within=within):
            await kick_refresh(provider_id)
            refreshes += 1
    notices = await send_due_notices(resources, now=now)
    report = TickReport(
        requeued=sum(1 for r in requeued if not r.abandoned),
        abandoned=sum(1 for r in requeued if r.abandoned),
        redispatched=len(stale),
        scheduled=scheduled,
        refreshes=refreshes,
        notices=notices,
    )
    if any(vars(report).values()):
        log_event(logger, "sync.scheduler.tick", **vars(report))
    return report
