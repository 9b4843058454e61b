"""The taskiq scheduler: kicks `dashtam.scheduler.tick` every `SCHEDULER_TICK_SECONDS`.

It reads its schedule from task labels (`LabelScheduleSource`) and runs in-process: inside
the API when embedded, inside every `dashtam worker` in production (the tick task itself
makes sure one process per period does the work).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from taskiq import TaskiqScheduler
from taskiq.cli.scheduler.run import SchedulerLoop
from taskiq.schedule_sources import LabelScheduleSource

from dashtam.core.logging import log_event
from dashtam.jobs.tasks import JobQueue

logger = logging.getLogger("dashtam.jobs.scheduler")


@dataclass
class SchedulerRunner:
    """The scheduler loop as a background task of the current event loop."""

    queue: JobQueue
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    async def start(self) -> None:
        """Load the label schedules and start the loop (the broker must be started)."""
        source = LabelScheduleSource(self.queue.broker)
        await source.startup()
        scheduler = TaskiqScheduler(self.queue.broker, sources=[source])
        loop = SchedulerLoop(scheduler, event_loop=asyncio.get_running_loop())
        self._task = asyncio.create_task(
            loop.run(update_interval=timedelta(minutes=10), send_timeout=10.0),
            name="dashtam-scheduler",
        )
        log_event(
            logger,
            "jobs.scheduler.started",
            tick_seconds=self.queue.resources.settings.scheduler_tick_seconds,
        )

    async def stop(self) -> None:
        """Stop the loop (idempotent)."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        log_event(logger, "jobs.scheduler.stopped")
