"""Start and stop the job machinery of one process (the API lifespan and the CLI use this).

Embedded (no `REDIS_URL`): the in-memory broker runs jobs on the API's event loop and the
scheduler runs in the API process. Production: API replicas only enqueue to Redis; `dashtam
worker` processes run the jobs and the scheduler.
"""

from __future__ import annotations

import asyncio
import logging

from taskiq import AsyncBroker, InMemoryBroker

from dashtam.core.logging import log_event
from dashtam.core.state import AppResources
from dashtam.jobs.broker import is_embedded
from dashtam.jobs.scheduler import SchedulerRunner
from dashtam.jobs.tasks import JobQueue

logger = logging.getLogger("dashtam.jobs")

#: How long shutdown waits for in-process jobs before cancelling them (their runs' leases
#: expire and the scheduler re-queues them after a restart).
SHUTDOWN_GRACE_SECONDS = 10.0


async def start_jobs(
    resources: AppResources,
    *,
    run_scheduler: bool | None = None,
    broker: AsyncBroker | None = None,
) -> JobQueue:
    """Create the broker and tasks, start them, and register their shutdown.

    Args:
        resources: The process's resources (the queue lands in `resources.extras`).
        run_scheduler: Run the scheduler here (default: when embedded and enabled).
        broker: Use this broker instead of the one the settings call for (tests).

    Returns:
        The job queue.
    """
    settings = resources.settings
    queue = JobQueue.create(resources, broker)
    await queue.broker.startup()
    if run_scheduler is None:
        run_scheduler = is_embedded(settings) and settings.scheduler_enabled
    runner = SchedulerRunner(queue) if run_scheduler else None
    if runner is not None:
        await runner.start()

    async def stop() -> None:
        if runner is not None:
            await runner.stop()
        await drain(queue)
        await queue.broker.shutdown()

    resources.add_closer(stop)
    log_event(
        logger,
        "jobs.started",
        broker="memory" if queue.embedded else "redis",
        scheduler=run_scheduler,
    )
    return queue


async def drain(queue: JobQueue, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
    """Let in-process jobs finish for `grace` seconds, then cancel the rest."""
    broker = queue.broker
    if not isinstance(broker, InMemoryBroker):
        return
    pending = set(broker._running_tasks)
    if not pending:
        return
    _done, still = await asyncio.wait(pending, timeout=grace)
    for task in still:
        task.cancel()
    if still:
        await asyncio.gather(*still, return_exceptions=True)
        log_event(logger, "jobs.cancelled_at_shutdown", logging.WARNING, jobs=len(still))
