"""Hooks other domains attach to: a provider got connected; a provider is being deleted.

These are the single call sites the sync engine and the financial-data tables plug into;
until they exist the hooks only log.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.logging import log_event
from dashtam.core.state import AppResources

logger = logging.getLogger("dashtam.connections.events")


async def on_connected(resources: AppResources, provider_id: uuid.UUID) -> None:
    """Called after the commit that made a provider `active` (first connect or re-authorize).

    Queues the first sync (trigger `connect`; or returns the one already queued). It runs
    after the commit, so a job never sees a provider whose tokens are not stored yet.

    Args:
        resources: The application's resources (broker, database, …).
        provider_id: The provider that just became active.
    """
    from dashtam.models.financial import SyncTrigger
    from dashtam.services.sync.service import queue_sync

    try:
        requested = await queue_sync(resources, provider_id, trigger=SyncTrigger.CONNECT)
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
    log_event(
        logger,
        "provider.connected",
        provider_id=str(provider_id),
        sync="queued" if requested is not None else "not_queued",
        run_id=str(requested.run.id) if requested is not None else None,
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
