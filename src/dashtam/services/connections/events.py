"""Hooks other domains attach to: a provider got connected; a provider is being deleted.

These are the single call sites the sync engine and the financial-data tables plug into;
until they exist the hooks only log.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.database import after_commit
from dashtam.core.logging import log_event
from dashtam.core.state import AppResources
from dashtam.core.types import utcnow

logger = logging.getLogger("dashtam.connections.events")


async def on_connected(
    session: AsyncSession,
    resources: AppResources,
    *,
    user_id: uuid.UUID,
    provider_id: uuid.UUID,
) -> None:
    """Called inside the unit of work that makes a provider `active` (connect or re-authorize).

    Queues the first sync (trigger `connect`; or keeps the one already queued) in that same
    unit of work, so connecting costs one transaction instead of two. A savepoint isolates
    it: if queuing fails, the connection still commits and the scheduler syncs the provider
    later. The job is dispatched only after the commit, so a worker never sees a run whose
    provider has no tokens yet.

    Args:
        session: The connecting unit of work (flush only; the caller commits).
        resources: The application's resources (the job queue for the dispatch).
        user_id: The provider's owner.
        provider_id: The provider becoming active.
    """
    from dashtam.models.financial import SyncTrigger
    from dashtam.services.sync import runs
    from dashtam.services.sync.service import dispatch

    try:
        async with session.begin_nested():
            run, created = await runs.create_or_get_active(
                session,
                user_id=user_id,
                provider_id=provider_id,
                trigger=SyncTrigger.CONNECT,
                now=utcnow(),
            )
    except Exception as exc:  # the connection is stored; the scheduler syncs it if this fails
        log_event(
            logger,
            "provider.connected",
            logging.ERROR,
            provider_id=str(provider_id),
            sync="queue_failed",
            error_type=type(exc).__name__,
        )
        return
    run_id = run.id
    if created:
        after_commit(session, lambda: dispatch(resources, run_id, provider_id))
    log_event(
        logger,
        "provider.connected",
        provider_id=str(provider_id),
        sync="queued" if created else "already_queued",
        run_id=str(run_id),
    )


async def on_deleting(session: AsyncSession, provider_id: uuid.UUID, *, purge: bool) -> None:
    """Called inside the deleting unit of work, before the provider row goes.

    Data tables (accounts, balances, positions, transactions, sync runs) hook in here: with
    `purge` they delete the provider's rows; without it they keep them (detached from the
    provider) so the account holder's history survives the disconnection.

    Args:
        session: The deleting unit of work (flush only; the caller commits).
        provider_id: The provider about to be deleted.
        purge: Whether the account holder asked for the data to be removed too.
    """
    log_event(logger, "provider.deleting", provider_id=str(provider_id), purge=purge)
