"""Sync use cases: request a sync (API, on connect, scheduler), read runs, dispatch jobs.

Runs are created in the caller's unit of work; their job is dispatched only after that unit of
work commits (`after_commit`), so a worker never looks for a run that is not there and a
request that fails queues nothing. The dispatcher (the job queue) lives in
`resources.extras[DISPATCHER_KEY]`; without one (a CLI, a test) the run simply stays queued
until someone runs it — the scheduler re-dispatches queued runs nobody picked up.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.database import after_commit, session_scope
from dashtam.core.logging import log_event
from dashtam.core.state import AppResources
from dashtam.core.types import utcnow
from dashtam.models.financial import SyncRun, SyncTrigger
from dashtam.models.provider import Provider, ProviderStatus
from dashtam.services.connections import repository as connections_repo
from dashtam.services.connections.errors import ProviderNotFound
from dashtam.services.sync import runs
from dashtam.services.sync.errors import SyncNotAllowed, SyncRunNotFound

logger = logging.getLogger("dashtam.sync")

#: Where the job queue registers itself in `resources.extras`.
DISPATCHER_KEY = "sync_dispatcher"


class SyncDispatcher(Protocol):
    """Hands a run to a worker (the job queue implements this)."""

    async def dispatch_sync(self, run_id: uuid.UUID, provider_id: uuid.UUID) -> None:
        """Enqueue the job that runs `run_id`."""


def dispatcher_of(resources: AppResources) -> SyncDispatcher | None:
    """The registered dispatcher, if the job queue is running in this process."""
    dispatcher: SyncDispatcher | None = resources.extras.get(DISPATCHER_KEY)
    return dispatcher


async def dispatch(resources: AppResources, run_id: uuid.UUID, provider_id: uuid.UUID) -> bool:
    """Enqueue a run's job; never raises (a lost dispatch is redone by the scheduler).

    Returns:
        Whether the job was handed to a queue.
    """
    dispatcher = dispatcher_of(resources)
    if dispatcher is None:
        log_event(logger, "sync.dispatch.no_queue", run_id=str(run_id))
        return False
    try:
        await dispatcher.dispatch_sync(run_id, provider_id)
    except Exception as exc:  # the queued row survives; the scheduler dispatches it again
        log_event(
            logger,
            "sync.dispatch.failed",
            logging.ERROR,
            run_id=str(run_id),
            error_type=type(exc).__name__,
        )
        return False
    return True


def ensure_can_sync(provider: Provider) -> None:
    """Refuse providers that cannot sync now.

    Raises:
        SyncNotAllowed: `reauth_required`, `provider_in_error` or `provider_not_connected`.
    """
    if provider.status == ProviderStatus.ACTIVE.value:
        return
    if provider.status == ProviderStatus.REAUTH_REQUIRED.value:
        raise SyncNotAllowed(
            "The institution needs you to sign in again before this connection can sync; "
            "start a new authorization.",
            code="reauth_required",
        )
    if provider.status == ProviderStatus.ERROR.value:
        raise SyncNotAllowed(
            "This connection is in an error state"
            + (f": {provider.last_error}" if provider.last_error else "")
            + ". Refresh or re-authorize it first.",
            code="provider_in_error",
        )
    raise SyncNotAllowed(
        f"This connection is {provider.status}; authorize it before syncing.",
        code="provider_not_connected",
    )


@dataclass(frozen=True)
class Requested:
    """The run a sync request resolved to."""

    run: SyncRun
    created: bool


async def request_sync(
    session: AsyncSession,
    resources: AppResources,
    *,
    user_id: uuid.UUID,
    provider_id: uuid.UUID,
    trigger: SyncTrigger = SyncTrigger.MANUAL,
    now: datetime | None = None,
) -> Requested:
    """Queue a sync of the caller's provider, or return the one already queued or running.

    The job is dispatched after the caller's unit of work commits.

    Raises:
        ProviderNotFound: No such provider, or not the caller's.
        SyncNotAllowed: The provider is not active.
    """
    provider = await connections_repo.get_provider_for_user(
        session, user_id=user_id, provider_id=provider_id
    )
    if provider is None:
        raise ProviderNotFound()
    ensure_can_sync(provider)
    run, created = await runs.create_or_get_active(
        session,
        user_id=user_id,
        provider_id=provider_id,
        trigger=trigger,
        now=now or utcnow(),
    )
    if created:
        run_id = run.id
        after_commit(session, lambda: dispatch(resources, run_id, provider_id))
        log_event(
            logger,
            "sync.run.queued",
            run_id=str(run_id),
            provider_id=str(provider_id),
            trigger=trigger.value,
        )
    return Requested(run, created)


async def queue_sync(
    resources: AppResources,
    provider_id: uuid.UUID,
    *,
    trigger: SyncTrigger,
    now: datetime | None = None,
) -> Requested | None:
    """Queue a sync for any provider in its own unit of work (on connect, scheduler, CLI).

    Returns:
        The run, or None when the provider is gone or not active.
    """
    async with session_scope(resources.session_factory) as session:
        provider = await connections_repo.get_provider(session, provider_id=provider_id)
        if provider is None or provider.status != ProviderStatus.ACTIVE.value:
            return None
        return await request_sync(
            session,
            resources,
            user_id=provider.user_id,
            provider_id=provider_id,
            trigger=trigger,
            now=now,
        )


async def get_run_for_user(
    session: AsyncSession, *, user_id: uuid.UUID, run_id: uuid.UUID
) -> SyncRun:
    """One of the caller's runs.

    Raises:
        SyncRunNotFound: No such run, or not the caller's.
    """
    run = await runs.get_run_for_user(session, run_id=run_id, user_id=user_id)
    if run is None:
        raise SyncRunNotFound()
    return run


async def list_runs_for_user(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    provider_id: uuid.UUID,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[SyncRun]:
    """The caller's provider's runs, newest first (one more than `limit` tells "has more").

    Raises:
        ProviderNotFound: No such provider, or not the caller's.
    """
    provider = await connections_repo.get_provider_for_user(
        session, user_id=user_id, provider_id=provider_id
    )
    if provider is None:
        raise ProviderNotFound()
    return await runs.list_runs(session, provider_id=provider_id, limit=limit, before=before)
