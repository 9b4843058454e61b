"""The job queue and the scheduler: in-memory broker, after-commit dispatch, ticks, notices."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from dashtam.core.database import session_scope
from dashtam.core.kv import KeyValueStore
from dashtam.core.types import utcnow
from dashtam.jobs.runtime import start_jobs
from dashtam.jobs.tasks import JobQueue
from dashtam.models.financial import SyncRun, SyncTrigger
from dashtam.models.provider import Provider, ProviderToken
from dashtam.models.sync import ProviderNotice
from dashtam.services.sync import runs
from dashtam.services.sync.scheduler import run_tick
from dashtam.services.sync.service import DISPATCHER_KEY, request_sync
from tests.integration.sync.rig import SyncRig, sync_rig


class RecordingDispatcher:
    """Records dispatches instead of running them."""

    def __init__(self) -> None:
        self.calls: list[uuid.UUID] = []

    async def dispatch_sync(self, run_id: uuid.UUID, provider_id: uuid.UUID) -> None:
        self.calls.append(run_id)


class RecordingEmail:
    """Records templated emails."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    async def send_template(self, to: str, template: str, **context: Any) -> None:
        self.sent.append((to, template, context))


def live_sim() -> dict[str, object]:
    """A simulator whose clock starts at the real now, so jobs on the real clock agree."""
    return {"simulator_start_time": utcnow().replace(microsecond=0)}


async def all_runs(rig: SyncRig) -> list[SyncRun]:
    async with session_scope(rig.resources.session_factory) as session:
        return list((await session.execute(select(SyncRun))).scalars().all())


async def set_provider(rig: SyncRig, **values: Any) -> None:
    async with session_scope(rig.resources.session_factory) as session:
        await session.execute(
            update(Provider).where(Provider.id == rig.provider_id).values(**values)  # type: ignore[arg-type]
        )


async def set_tokens(rig: SyncRig, **values: Any) -> None:
    async with session_scope(rig.resources.session_factory) as session:
        await session.execute(
            update(ProviderToken)
            .where(ProviderToken.provider_id == rig.provider_id)  # type: ignore[arg-type]
            .values(**values)
        )


class TestAfterCommitDispatch:
    async def test_a_failing_request_queues_nothing(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig:
            recorder = RecordingDispatcher()
            rig.resources.extras[DISPATCHER_KEY] = recorder

            async def failing_request() -> None:
                async with session_scope(rig.resources.session_factory) as session:
                    await request_sync(
                        session, rig.resources, user_id=rig.user_id, provider_id=rig.provider_id
                    )
                    raise RuntimeError("the request failed after queueing")

            with pytest.raises(RuntimeError):
                await failing_request()
            assert recorder.calls == []
            assert await all_runs(rig) == []

            async with session_scope(rig.resources.session_factory) as session:
                requested = await request_sync(
                    session, rig.resources, user_id=rig.user_id, provider_id=rig.provider_id
                )
                assert recorder.calls == []  # not before the commit
            assert recorder.calls == [requested.run.id]


class TestInMemoryBroker:
    async def test_queued_sync_runs_on_the_loop_and_matches_the_simulator(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store, sim=live_sim()) as rig:
            queue = JobQueue.create(rig.resources, _memory_broker(rig))
            await queue.broker.startup()
            try:
                async with session_scope(rig.resources.session_factory) as session:
                    requested = await request_sync(
                        session,
                        rig.resources,
                        user_id=rig.user_id,
                        provider_id=rig.provider_id,
                        trigger=SyncTrigger.CONNECT,
                    )
                await queue.wait_idle()
                (run,) = await all_runs(rig)
                assert run.id == requested.run.id
                assert (run.status, run.trigger) == ("succeeded", "connect")
                assert await rig.stored() == await rig.truth()
                # A duplicate delivery of a finished run does nothing.
                await queue.dispatch_sync(run.id, rig.provider_id)
                await queue.wait_idle()
                assert [r.status for r in await all_runs(rig)] == ["succeeded"]
            finally:
                await queue.broker.shutdown()

    async def test_scheduler_loop_ticks_and_syncs_a_due_provider(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(
            tmp_root, engine, kv_store, sim=live_sim(), scheduler_tick_seconds=1
        ) as rig:
            queue = await start_jobs(rig.resources, run_scheduler=True, broker=_memory_broker(rig))
            try:
                for _ in range(100):
                    await asyncio.sleep(0.1)
                    if any(r.status == "succeeded" for r in await all_runs(rig)):
                        break
                await queue.wait_idle()
                runs_ = await all_runs(rig)
                assert [(r.trigger, r.status) for r in runs_] == [("scheduled", "succeeded")]
            finally:
                for closer in reversed(rig.resources.closers):
                    await closer()
                rig.resources.closers.clear()


def _memory_broker(rig: SyncRig) -> Any:
    from taskiq import InMemoryBroker

    return InMemoryBroker()


class TestSchedulerTick:
    async def test_due_providers_get_one_scheduled_run_and_others_are_left_alone(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig:
            recorder = RecordingDispatcher()
            rig.resources.extras[DISPATCHER_KEY] = recorder
            now = utcnow()
            await set_provider(rig, next_sync_at=now + timedelta(hours=1), last_synced_at=now)
            report = await run_tick(rig.resources, now=now)
            assert report.scheduled == 0 and recorder.calls == []

            await set_provider(rig, next_sync_at=now - timedelta(minutes=1))
            report = await run_tick(rig.resources, now=now)
            assert report.scheduled == 1
            (run,) = await all_runs(rig)
            assert (run.trigger, run.status) == ("scheduled", "queued")
            assert recorder.calls == [run.id]
            # Still due, but a run is already active: nothing new.
            assert (await run_tick(rig.resources, now=now)).scheduled == 0
            assert len(await all_runs(rig)) == 1

            await set_provider(rig, status="reauth_required")
            async with session_scope(rig.resources.session_factory) as session:
                await runs.fail_unclaimed(
                    session, run_id=run.id, now=now, error_code="x", error_message="x"
                )
            assert (await run_tick(rig.resources, now=now)).scheduled == 0

    async def test_expired_lease_is_requeued_and_dispatched_then_abandoned(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store, sync_max_attempts=2) as rig:
            recorder = RecordingDispatcher()
            rig.resources.extras[DISPATCHER_KEY] = recorder
            now = utcnow()
            run_id = await rig.queue(now=now)
            async with session_scope(rig.resources.session_factory) as session:
                claim = await runs.claim(
                    session, run_id=run_id, now=now, lease=timedelta(seconds=60)
                )
            assert claim is not None and claim.attempt == 1
            await set_provider(rig, next_sync_at=now + timedelta(hours=6))
            # Lease still live: untouched.
            assert (await run_tick(rig.resources, now=now)).requeued == 0
            later = now + timedelta(seconds=61)
            report = await run_tick(rig.resources, now=later)
            assert report.requeued == 1 and recorder.calls == [run_id]
            (run,) = await all_runs(rig)
            assert run.status == "queued"
            # The stale worker can no longer write to the run.
            async with session_scope(rig.resources.session_factory) as session:
                assert not await runs.renew(session, claim, now=later, lease=timedelta(seconds=60))
                second = await runs.claim(
                    session, run_id=run_id, now=later, lease=timedelta(seconds=60)
                )
            assert second is not None and second.attempt == 2
            report = await run_tick(rig.resources, now=later + timedelta(seconds=61))
            assert report.abandoned == 1
            (run,) = await all_runs(rig)
            assert (run.status, run.error_code) == ("failed", "abandoned")

    async def test_stale_queued_run_is_dispatched_again(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig:
            recorder = RecordingDispatcher()
            rig.resources.extras[DISPATCHER_KEY] = recorder
            now = utcnow()
            run_id = await rig.queue(now=now)
            await set_provider(rig, next_sync_at=now + timedelta(hours=6))
            assert (await run_tick(rig.resources, now=now)).redispatched == 0
            report = await run_tick(rig.resources, now=now + timedelta(minutes=10))
            assert report.redispatched == 1 and recorder.calls == [run_id]

    async def test_budget_limits_scheduled_syncs_per_tick(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        # 16 requests per 60 s tick at 8 requests per sync: two syncs per tick.
        async with sync_rig(tmp_root, engine, kv_store, schwab_requests_per_minute=16) as rig:
            rig.resources.extras[DISPATCHER_KEY] = RecordingDispatcher()
            from tests.integration.sync.rig import connect

            for _ in range(2):
                await connect(rig.resources, rig.sim, rig.provider, "demo")
            report = await run_tick(rig.resources, now=utcnow())
            assert report.scheduled == 2
            assert (await run_tick(rig.resources, now=utcnow())).scheduled == 1


class TestRefreshAhead:
    async def test_token_expiring_soon_is_refreshed_by_a_job(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store, sim=live_sim()) as rig:
            queue = JobQueue.create(rig.resources, _memory_broker(rig))
            await queue.broker.startup()
            try:
                now = utcnow()
                await set_provider(rig, next_sync_at=now + timedelta(hours=6))
                await set_tokens(rig, access_expires_at=now + timedelta(minutes=2))
                report = await run_tick(rig.resources, now=now, kick_refresh=queue.dispatch_refresh)
                assert report.refreshes == 1
                await queue.wait_idle()
                async with session_scope(rig.resources.session_factory) as session:
                    row = (
                        await session.execute(
                            select(ProviderToken).where(
                                ProviderToken.provider_id == rig.provider_id  # type: ignore[arg-type]
                            )
                        )
                    ).scalar_one()
                assert row.refresh_count == 1
                assert (
                    row.access_expires_at is not None
                    and row.access_expires_at > now + timedelta(minutes=20)
                )
                report = await run_tick(rig.resources, now=now, kick_refresh=queue.dispatch_refresh)
                assert report.refreshes == 0
            finally:
                await queue.broker.shutdown()


class TestReauthNotices:
    async def test_warning_sent_once_then_required_notice_once(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig:
            mail = RecordingEmail()
            rig.resources.extras["email"] = mail
            rig.resources.extras[DISPATCHER_KEY] = RecordingDispatcher()
            now = utcnow()
            await set_provider(rig, next_sync_at=now + timedelta(days=1))
            await set_tokens(rig, refresh_expires_at=now + timedelta(days=3))
            assert (await run_tick(rig.resources, now=now)).notices == 0

            await set_tokens(rig, refresh_expires_at=now + timedelta(hours=10))
            assert (await run_tick(rig.resources, now=now)).notices == 1
            assert (await run_tick(rig.resources, now=now + timedelta(hours=1))).notices == 0
            assert [t for _, t, _ in mail.sent] == ["reauth_soon"]
            to, _, context = mail.sent[0]
            assert to.endswith("@example.com")
            assert context["institution"] == "Charles Schwab"

            await set_provider(rig, status="reauth_required")
            assert (await run_tick(rig.resources, now=now)).notices == 1
            assert (await run_tick(rig.resources, now=now)).notices == 0
            assert [t for _, t, _ in mail.sent] == ["reauth_soon", "reauth_required"]
            async with session_scope(rig.resources.session_factory) as session:
                notices = (await session.execute(select(ProviderNotice))).scalars().all()
            assert sorted(n.kind for n in notices) == ["reauth_required", "reauth_soon"]

            # A new login starts a new episode: it may be warned again.
            await set_provider(rig, status="active")
            await set_tokens(
                rig,
                issued_at=now + timedelta(seconds=5),
                refresh_expires_at=now + timedelta(hours=5),
            )
            assert (await run_tick(rig.resources, now=now)).notices == 1

    async def test_real_templates_render(self, tmp_root: Path) -> None:
        from dashtam.services.email.render import render_email

        for template in ("reauth_soon", "reauth_required"):
            subject, text, html = render_email(
                template,
                name="Ann",
                alias="<b>My</b> brokerage",
                institution="Charles Schwab",
                expires_at="2026-12-01 10:00",
                wall="7 days",
                link_base_url="https://x",
            )
            assert "Charles Schwab" in subject
            assert "<b>My</b> brokerage" in text
            assert "&lt;b&gt;My&lt;/b&gt;" in html
