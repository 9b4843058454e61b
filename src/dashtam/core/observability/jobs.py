"""Job instrumentation: a taskiq middleware that times jobs and gives each a fresh log context.

Add it to every broker (`broker.add_middlewares(JobObservabilityMiddleware())`). taskiq runs
`pre_execute`, the task and `post_execute` in one asyncio task per message, so the context
bound here is exactly the job's: its logs carry `job` (the task name), `job_id` (taskiq's
message id), `run_id` and `provider_id` (when the task takes them), and no request or user id
leaks in from the request that enqueued it (an embedded broker's job inherits that context).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Mapping
from contextvars import Token
from dataclasses import dataclass
from typing import Any

from taskiq import TaskiqMessage, TaskiqMiddleware, TaskiqResult

from dashtam.core.logging import log_event
from dashtam.core.observability import metrics
from dashtam.core.request_context import (
    set_job,
    set_provider_id,
    set_request_id,
    set_user_id,
)

logger = logging.getLogger("dashtam.jobs")


@dataclass
class _Running:
    started: float
    target: metrics.Metrics
    token: Token[metrics.Metrics | None]


def job_context(task_name: str, job_id: str, arguments: Mapping[str, Any]) -> dict[str, str]:
    """The log fields identifying one job run (ids only: never other task arguments)."""
    fields = {"job": task_name, "job_id": job_id}
    run_id = arguments.get("run_id")
    if run_id:
        fields["run_id"] = str(run_id)
    return fields


class JobObservabilityMiddleware(TaskiqMiddleware):
    """Binds a fresh log context per job and records job counts, durations and failures.

    Args:
        target: The `Metrics` to record into; None records into the active one at the time the
            job starts (the API's when embedded, the worker's default otherwise).
    """

    def __init__(self, target: metrics.Metrics | None = None) -> None:
        super().__init__()
        self._target = target
        self._running: dict[str, _Running] = {}

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        """Bind the job's context and start its clock."""
        arguments = self._arguments(message)
        set_request_id(None)
        set_user_id(None)
        provider_id = arguments.get("provider_id")
        set_provider_id(str(provider_id) if provider_id else None)
        set_job(job_context(message.task_name, message.task_id, arguments))
        target = self._target or metrics.current()
        # Bound for the job's own task: what it records (syncs, refreshes) goes to `target`.
        token = metrics.bind(target)
        self._running[message.task_id] = _Running(time.perf_counter(), target, token)
        target.job_started(message.task_name)
        return message

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        """Record the outcome and duration, then drop the job's context."""
        running = self._running.pop(message.task_id, None)
        if running is None:
            return
        outcome = "error" if result.is_err else "ok"
        elapsed = time.perf_counter() - running.started
        running.target.job_finished(message.task_name, outcome, elapsed)
        # One line per job, inside its context: `job`, `job_id`, `run_id`, `provider_id`.
        log_event(
            logger,
            "jobs.job.finished",
            logging.WARNING if result.is_err else logging.INFO,
            outcome=outcome,
            duration_ms=round(elapsed * 1000, 1),
            error_type=type(result.error).__name__ if result.is_err else None,
        )
        # A different context than `pre_execute`'s (a custom receiver): nothing to undo there.
        with contextlib.suppress(ValueError):
            metrics.reset(running.token)
        set_job(None)
        set_provider_id(None)

    def _arguments(self, message: TaskiqMessage) -> dict[str, Any]:
        """The task's arguments by parameter name (positional ones matched to the signature)."""
        arguments: dict[str, Any] = dict(message.kwargs)
        task = self.broker.find_task(message.task_name) if self.broker is not None else None
        func = getattr(task, "original_func", None)
        if func is None or not message.args:
            return arguments
        try:
            names = list(inspect.signature(func).parameters)
        except (TypeError, ValueError):
            return arguments
        for name, value in zip(names, message.args, strict=False):
            arguments.setdefault(name, value)
        return arguments
