"""Graceful shutdown of real processes: SIGTERM drains in-flight work and exits 0.

API: the in-flight request is a registration whose body the client uploads slowly, so the
server has parsed the headers and is inside the application (waiting for the rest of the body)
when SIGTERM arrives. That is an honest in-flight request on an unmodified server: no test-only
route, no artificial sleep in the application. The server's own `/metrics` (the in-flight
gauge) tells the test when the request is really inside the application.

Worker: the in-flight job is a token refresh held by a PostgreSQL table lock the test owns; on
SIGTERM the worker stops taking jobs, finishes that one once the lock goes, acknowledges it
(nothing left pending in the Redis stream) and exits 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis import asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from dashtam.core.state import AppResources
from dashtam.jobs.broker import CONSUMER_GROUP, QUEUE_NAME, create_broker
from dashtam.jobs.tasks import JobQueue
from tests.support.backends import worker_database_url, worker_redis_url
from tests.support.live import LiveProcess, run_dashtam

pytestmark = pytest.mark.smoke

REGISTER = "/api/v1/auth/register"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {"ENVIRONMENT": "development", "LOG_FORMAT": "json", "SCHEDULER_ENABLED": "false"}
    if os.environ.get("TEST_DATABASE_URL"):
        env["DATABASE_URL"] = worker_database_url(tmp_path)
        env["AUTO_MIGRATE"] = "false"
    if worker_redis_url():
        env["REDIS_URL"] = worker_redis_url() or ""
    return env


def _port(live: LiveProcess) -> int:
    return int(live.base_url.rsplit(":", 1)[1])


def _refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


async def _in_flight(live: LiveProcess) -> float:
    """The server's own count of requests inside the application (this scrape included)."""
    async with live.async_client(timeout=5.0) as client:
        text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("dashtam_http_requests_in_flight "):
            return float(line.split()[1])
    raise AssertionError("no in-flight gauge in /metrics")


class TestApiSigterm:
    async def test_in_flight_request_completes_new_connections_refused_exit_zero(
        self, tmp_path: Path, engine: AsyncEngine
    ) -> None:
        # `engine` makes sure this worker's PostgreSQL database exists and is migrated.
        body = json.dumps(
            {
                "email": "graceful@example.com",
                "password": "a-long-and-unusual-passphrase-42",
                "name": "Graceful",
            }
        ).encode()
        head, tail = body[:10], body[10:]
        release = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield head
            await release.wait()
            yield tail

        with run_dashtam("api", workdir=tmp_path, env=_env(tmp_path)) as live:
            port = _port(live)
            async with live.async_client(timeout=30.0) as client:
                upload = asyncio.create_task(
                    client.post(
                        REGISTER,
                        content=slow_body(),
                        headers={
                            "Content-Type": "application/json",
                            "Content-Length": str(len(body)),
                        },
                    )
                )
                deadline = time.monotonic() + 10
                while await _in_flight(live) < 2:  # the slow upload + this scrape
                    assert time.monotonic() < deadline, "the slow request never started"
                    await asyncio.sleep(0.05)

                live.process.send_signal(signal.SIGTERM)

                # The listener closes at once, while the request is still being served.
                deadline = time.monotonic() + 5
                while not _refuses_connections(port):
                    assert time.monotonic() < deadline, "still accepting after SIGTERM"
                    await asyncio.sleep(0.05)
                assert live.process.poll() is None, "exited before finishing the request"
                assert not upload.done()

                release.set()
                response = await upload

            assert response.status_code == 202, response.text
            assert response.json()["message"]
            code = await asyncio.to_thread(live.process.wait, 25)
            assert code == 0, live.logs()[-3000:]
        logs = live.logs()
        assert "Shutting down" in logs
        # The lifespan ran to its end: resources closed after the request finished.
        assert '"event": "app.stopped"' in logs
        assert '"route": "/api/v1/auth/register", "status": 202' in logs


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.skipif(
    not (os.environ.get("TEST_DATABASE_URL") and os.environ.get("TEST_REDIS_URL")),
    reason="`dashtam worker` needs Redis; the in-flight job is held by a PostgreSQL table lock",
)
class TestWorkerSigterm:
    async def test_running_job_finishes_and_is_acknowledged_before_exit(
        self, tmp_path: Path, resources: AppResources, engine: AsyncEngine
    ) -> None:
        settings = resources.settings
        redis_url = settings.redis_url
        assert redis_url is not None
        store = aioredis.from_url(redis_url)
        await store.delete(QUEUE_NAME)  # no leftovers from earlier runs
        log_file = tmp_path / "worker.log"
        env = {
            **os.environ,
            **_env(tmp_path),
            "VAR_DIR": str(tmp_path / "var"),
            "SECRET_KEY": settings.secret_key_bytes.decode(),
            "ENCRYPTION_KEYS": (settings.encryption_keys or SecretStr("")).get_secret_value(),
        }
        with log_file.open("wb") as log:
            worker = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
                [sys.executable, "-m", "dashtam", "worker", "--no-scheduler"],
                cwd=tmp_path,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def logs() -> str:
            return log_file.read_text(errors="replace")

        queue = JobQueue.create(resources, create_broker(settings))
        await queue.broker.startup()
        holder = await engine.connect()
        try:
            await asyncio.to_thread(
                _wait_for, lambda: "jobs.worker.started" in logs(), 30, "the worker to start"
            )
            # Hold every reader of `providers` so the job we enqueue stays in flight.
            await holder.begin()
            await holder.execute(text("LOCK TABLE providers IN ACCESS EXCLUSIVE MODE"))
            await queue.dispatch_refresh(uuid.uuid4())
            deadline = time.monotonic() + 15
            while not await _blocked_on_lock(engine):
                assert time.monotonic() < deadline, f"the job never started:\n{logs()[-3000:]}"
                await asyncio.sleep(0.1)

            worker.send_signal(signal.SIGTERM)
            await asyncio.sleep(1.0)
            assert worker.poll() is None, "the worker left its job behind"

            await holder.rollback()  # the job can read again and finishes
            code = await asyncio.to_thread(worker.wait, 40)
        finally:
            if holder.in_transaction():
                await holder.rollback()
            await holder.close()
            await queue.broker.shutdown()
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        output = logs()
        assert code == 0, output[-3000:]
        finished = [
            json.loads(line)
            for line in output.splitlines()
            if '"event": "jobs.job.finished"' in line
        ]
        assert [(f["job"], f["outcome"]) for f in finished] == [("dashtam.tokens.refresh", "ok")]
        assert finished[0]["provider_id"] and finished[0]["job_id"]
        assert output.index("jobs.job.finished") < output.index("jobs.worker.stopped")
        # Acknowledged: nothing is left pending for another worker to redo.
        pending = await store.xpending(QUEUE_NAME, CONSUMER_GROUP)
        await store.aclose()
        assert pending["pending"] == 0


async def _blocked_on_lock(engine: AsyncEngine) -> bool:
    """Whether a worker connection is waiting for our table lock."""
    async with engine.connect() as conn:
        waiting = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
        )
    return bool(waiting)
