"""Job definitions and the `JobQueue` that enqueues them.

Tasks are registered on a broker per application (`JobQueue.create`), as closures over that
application's resources: nothing is built at import time, and a test, the API and a worker
each get their own. Every task is idempotent and at-least-once safe:

* `dashtam.sync.run(run_id)`: the engine claims the run atomically; a duplicate delivery of a
  finished or live run does nothing;
* `dashtam.scheduler.tick()`: the scheduler's periodic work (`services.sync.scheduler`);
  many workers tick, one per tick period does the work (a KV key), and every step is
  idempotent anyway;
* `dashtam.tokens.refresh(provider_id)`: refresh ahead of expiry; single-flight per provider
  in the `TokenManager`, and a no-op when the token is still fresh.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from taskiq import AsyncBroker, InMemoryBroker

from dashtam.core.kv import KeyValueUnavailable
from dashtam.core.logging import log_event
from dashtam.core.observability.jobs import JobObservabilityMiddleware
from dashtam.core.state import AppResources
from dashtam.core.types import utcnow
from dashtam.jobs.broker import create_broker
from dashtam.providers.errors import ProviderError, ReauthRequired
from dashtam.services.connections.errors import NotConnected, ProviderNotFound, TokenRefreshBusy
from dashtam.services.connections.tokens import TokenManager
from dashtam.services.sync.engine import SyncEngine
from dashtam.services.sync.scheduler import TickReport, run_tick
from dashtam.services.sync.service import DISPATCHER_KEY

logger = logging.getLogger("dashtam.jobs")

SYNC_TASK = "dashtam.sync.run"
TICK_TASK = "dashtam.scheduler.tick"
REFRESH_TASK = "dashtam.tokens.refresh"
TICK_SCHEDULE_ID = "dashtam-scheduler-tick"

#: `resources.extras` keys.
BROKER_KEY = "broker"
QUEUE_KEY = "jobs"


@dataclass
class JobQueue:
    """The application's broker with Dashtam's tasks registered; the sync dispatcher.

    Attributes:
        broker: The taskiq broker.
        resources: The application the tasks run against.
        sync_task: Handle of `dashtam.sync.run`.
        tick_task: Handle of `dashtam.scheduler.tick`.
        refresh_task: Handle of `dashtam.tokens.refresh`.
    """

    broker: AsyncBroker
    resources: AppResources
    sync_task: Any
    tick_task: Any
    refresh_task: Any

    @classmethod
    def create(cls, resources: AppResources, broker: AsyncBroker | None = None) -> JobQueue:
        """Register the tasks on a (new) broker and put the queue in `resources.extras`."""
        broker = broker or create_broker(resources.settings)
        # Job metrics and a fresh log context (job, job_id, run_id, provider_id) per job.
        broker.add_middlewares(JobObservabilityMiddleware())
        settings = resources.settings

        async def sync_run(run_id: str, provider_id: str = "") -> str:
            outcome = await SyncEngine(resources).run(uuid.UUID(run_id))
            return outcome.status.value if outcome is not None else "skipped"

        async def scheduler_tick() -> dict[str, int]:
            report = await tick(resources, queue)
            return dict(vars(report)) if report is not None else {}

        async def tokens_refresh(provider_id: str) -> str:
            return await refresh_ahead(resources, uuid.UUID(provider_id))

        queue = cls(
            broker=broker,
            resources=resources,
            sync_task=broker.register_task(sync_run, task_name=SYNC_TASK),
            tick_task=broker.register_task(
                scheduler_tick,
                task_name=TICK_TASK,
                schedule=[
                    {"interval": settings.scheduler_tick_seconds, "schedule_id": TICK_SCHEDULE_ID}
                ],
            ),
            refresh_task=broker.register_task(tokens_refresh, task_name=REFRESH_TASK),
        )
        resources.extras[BROKER_KEY] = broker
        resources.extras[QUEUE_KEY] = queue
        resources.extras[DISPATCHER_KEY] = queue
        return queue

    @property
    def embedded(self) -> bool:
        """Whether jobs run in this process's event loop."""
        return isinstance(self.broker, InMemoryBroker)

    async def dispatch_sync(self, run_id: uuid.UUID, provider_id: uuid.UUID) -> None:
        """Enqueue `dashtam.sync.run` for a queued run."""
        await self.sync_task.kiq(str(run_id), str(provider_id))

    async def dispatch_refresh(self, provider_id: uuid.UUID) -> None:
        """Enqueue `dashtam.tokens.refresh`."""
        await self.refresh_task.kiq(str(provider_id))

    async def dispatch_tick(self) -> None:
        """Enqueue a scheduler tick now."""
        await self.tick_task.kiq()

    async def wait_idle(self) -> None:
        """Wait until every job started in this process finished (embedded broker only)."""
        if isinstance(self.broker, InMemoryBroker):
            # Jobs may enqueue jobs (a tick dispatches syncs): drain until quiet.
            while self.broker._running_tasks:
                await self.broker.wait_all()


async def tick(resources: AppResources, queue: JobQueue) -> TickReport | None:
    """One scheduler tick, done by one of the processes ticking in this period."""
    period = resources.settings.scheduler_tick_seconds
    now = utcnow()
    key = f"scheduler-tick:{int(now.timestamp()) // period}"
    try:
        if not await resources.kv.set_if_absent(key, "1", ttl=period * 2):
            return None
    except KeyValueUnavailable:
        # Every step is idempotent: ticking twice is harmless, not ticking is not.
        log_event(logger, "jobs.tick.dedupe_unavailable", logging.WARNING)
    return await run_tick(resources, now=now, kick_refresh=queue.dispatch_refresh)


async def refresh_ahead(resources: AppResources, provider_id: uuid.UUID) -> str:
    """Refresh a connection's access token if it expires before the next tick."""
    settings = resources.settings
    margin = timedelta(
        seconds=settings.token_refresh_margin_seconds + 2 * settings.scheduler_tick_seconds
    )
    try:
        await TokenManager(resources, refresh_margin=margin).access_token(provider_id)
    except ReauthRequired:
        return "reauth_required"  # the manager moved the provider and audited it
    except (NotConnected, ProviderNotFound):
        return "not_connected"
    except (ProviderError, TokenRefreshBusy) as exc:
        log_event(
            logger,
            "jobs.refresh.failed",
            logging.WARNING,
            provider_id=str(provider_id),
            error_type=type(exc).__name__,
        )
        return "failed"
    return "fresh"
