"""`dashtam worker`: run jobs from Redis (and the scheduler) until SIGTERM/SIGINT.

Each worker process runs up to `WORKER_CONCURRENCY` jobs at once on one event loop; start as
many processes as the machine (and the institution's request budget) allows. Messages are
acknowledged only after their job ran, so a killed worker's jobs are delivered again.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from taskiq.acks import AcknowledgeType
from taskiq.receiver import Receiver

from dashtam.core.config import ConfigurationError, Settings
from dashtam.core.logging import log_event
from dashtam.jobs.broker import is_embedded
from dashtam.jobs.runtime import start_jobs

logger = logging.getLogger("dashtam.jobs.worker")


async def run_worker(
    settings: Settings, *, concurrency: int | None = None, scheduler: bool = True
) -> int:
    """Consume jobs until a stop signal; returns the exit code.

    Raises:
        ConfigurationError: No `REDIS_URL` (embedded jobs run inside `dashtam api`).
    """
    if is_embedded(settings):
        raise ConfigurationError(
            "`dashtam worker` needs REDIS_URL; without it jobs run inside `dashtam api`."
        )
    from dashtam.main import build_resources  # the app factory module imports jobs too

    resources = await build_resources(settings)
    try:
        queue = await start_jobs(resources, run_scheduler=scheduler and settings.scheduler_enabled)
        receiver = Receiver(
            queue.broker,
            max_async_tasks=concurrency or settings.worker_concurrency,
            run_startup=False,
            ack_type=AcknowledgeType.WHEN_EXECUTED,
            wait_tasks_timeout=30.0,
        )
        finish = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, finish.set)
        log_event(
            logger,
            "jobs.worker.started",
            concurrency=concurrency or settings.worker_concurrency,
            scheduler=scheduler and settings.scheduler_enabled,
        )
        await receiver.listen(finish)
        log_event(logger, "jobs.worker.stopped")
    finally:
        await resources.close()
    return 0
