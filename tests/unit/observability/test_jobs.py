"""The job middleware: a fresh log context per job, and job counts, durations and failures."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from taskiq import InMemoryBroker

from dashtam.core.logging import JsonFormatter
from dashtam.core.observability.jobs import JobObservabilityMiddleware
from dashtam.core.observability.metrics import Metrics
from dashtam.core.request_context import (
    current_job,
    current_provider_id,
    current_request_id,
    current_user_id,
    set_provider_id,
    set_request_id,
    set_user_id,
)

RUN_ID = "6f1c7f0e-55c4-4a43-9d55-0a8a2b7f0c11"
PROVIDER_ID = "0b9e2c51-2f5e-4a7c-8f7e-4e0f1f8f2a90"


@pytest.fixture
async def broker() -> AsyncIterator[tuple[InMemoryBroker, Metrics]]:
    target = Metrics()
    in_memory = InMemoryBroker()
    in_memory.add_middlewares(JobObservabilityMiddleware(target))
    await in_memory.startup()
    yield in_memory, target
    await in_memory.shutdown()


def _log_line() -> dict[str, Any]:
    record = logging.LogRecord("dashtam.jobs", logging.INFO, __file__, 1, "job.step", None, None)
    parsed: dict[str, Any] = json.loads(JsonFormatter().format(record))
    return parsed


class TestJobContext:
    async def test_binds_job_run_and_provider_and_drops_the_request(
        self, broker: tuple[InMemoryBroker, Metrics]
    ) -> None:
        in_memory, _ = broker
        seen: dict[str, Any] = {}

        async def sync_run(run_id: str, provider_id: str = "") -> str:
            seen["request_id"] = current_request_id()
            seen["user_id"] = current_user_id()
            seen["provider_id"] = current_provider_id()
            seen["job"] = dict(current_job() or {})
            seen["log"] = _log_line()
            return "ok"

        task = in_memory.register_task(sync_run, task_name="dashtam.sync.run")
        # The job is kicked while "serving a request": none of that context may leak in.
        set_request_id("request-abc-123")
        set_user_id("user-1")
        set_provider_id("other-provider")
        try:
            kicked = await task.kiq(RUN_ID, provider_id=PROVIDER_ID)
            await in_memory.wait_all()
        finally:
            set_request_id(None)
            set_user_id(None)
            set_provider_id(None)

        assert seen["request_id"] is None
        assert seen["user_id"] is None
        assert seen["provider_id"] == PROVIDER_ID
        assert seen["job"] == {
            "job": "dashtam.sync.run",
            "job_id": kicked.task_id,
            "run_id": RUN_ID,
        }
        log = seen["log"]
        assert log["job"] == "dashtam.sync.run"
        assert log["job_id"] == kicked.task_id
        assert log["run_id"] == RUN_ID
        assert log["provider_id"] == PROVIDER_ID
        assert "request_id" not in log
        assert "user_id" not in log

    async def test_positional_provider_id_is_found_by_parameter_name(
        self, broker: tuple[InMemoryBroker, Metrics]
    ) -> None:
        in_memory, _ = broker
        seen: dict[str, Any] = {}

        async def tokens_refresh(provider_id: str) -> str:
            seen["provider_id"] = current_provider_id()
            seen["job"] = dict(current_job() or {})
            return "fresh"

        task = in_memory.register_task(tokens_refresh, task_name="dashtam.tokens.refresh")
        await task.kiq(PROVIDER_ID)
        await in_memory.wait_all()
        assert seen["provider_id"] == PROVIDER_ID
        assert "run_id" not in seen["job"]


class TestJobMetrics:
    async def test_counts_successes_and_failures_with_durations(
        self, broker: tuple[InMemoryBroker, Metrics]
    ) -> None:
        in_memory, target = broker

        async def tick() -> int:
            return 1

        async def boom() -> None:
            raise RuntimeError("upstream went away")

        ok_task = in_memory.register_task(tick, task_name="dashtam.scheduler.tick")
        bad_task = in_memory.register_task(boom, task_name="dashtam.boom")
        await ok_task.kiq()
        await ok_task.kiq()
        await bad_task.kiq()
        await in_memory.wait_all()

        ok = {"task": "dashtam.scheduler.tick", "outcome": "ok"}
        failed = {"task": "dashtam.boom", "outcome": "error"}
        assert target.value("dashtam_jobs_total", ok) == 2
        assert target.value("dashtam_jobs_total", failed) == 1
        assert target.value("dashtam_job_duration_seconds_count", ok) == 2
        assert target.value("dashtam_job_duration_seconds_count", failed) == 1
        assert target.value("dashtam_jobs_in_progress", {"task": "dashtam.scheduler.tick"}) == 0

    async def test_in_progress_while_running(self, broker: tuple[InMemoryBroker, Metrics]) -> None:
        in_memory, target = broker
        observed: list[float | None] = []

        async def slow() -> None:
            observed.append(target.value("dashtam_jobs_in_progress", {"task": "dashtam.slow"}))

        task = in_memory.register_task(slow, task_name="dashtam.slow")
        await task.kiq()
        await in_memory.wait_all()
        assert observed == [1]


class TestJobLog:
    async def test_one_line_per_job_with_its_outcome(
        self, broker: tuple[InMemoryBroker, Metrics], caplog: pytest.LogCaptureFixture
    ) -> None:
        in_memory, _ = broker

        async def boom() -> None:
            raise RuntimeError("upstream went away")

        task = in_memory.register_task(boom, task_name="dashtam.boom")
        with caplog.at_level(logging.INFO, logger="dashtam.jobs"):
            await task.kiq()
            await in_memory.wait_all()
        finished = [r for r in caplog.records if r.getMessage() == "jobs.job.finished"]
        assert len(finished) == 1
        fields = finished[0].fields  # type: ignore[attr-defined]
        assert fields["outcome"] == "error"
        assert fields["error_type"] == "RuntimeError"
        assert finished[0].levelno == logging.WARNING
