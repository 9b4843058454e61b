"""Sync failures: faults mid-sync, crashes between windows, dead tokens, concurrent triggers."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from dashtam.core.database import session_scope
from dashtam.core.kv import KeyValueStore
from dashtam.models.financial import SyncStatus, SyncTrigger
from dashtam.models.provider import Provider
from dashtam.services.sync import runs
from dashtam.services.sync.service import request_sync
from tests.integration.sync.rig import SyncRig, sync_rig
from tests.integration.sync.test_full_sync import fingerprint, provider_row, run_row

HOUR = 3600


async def second_account_hash(rig: SyncRig) -> str:
    users = await rig.control("GET", "/users")
    hashes: list[str] = next(u["account_hashes"] for u in users if u["username"] == "demo")
    return hashes[1]


async def trader_calls(rig: SyncRig) -> int:
    stats: dict[str, int] = (await rig.control("GET", "/stats"))["requests"]
    return sum(v for k, v in stats.items() if not k.split(" ", 1)[1].startswith("/control"))


class Crash(Exception):
    """Injected between two units of work."""


class TestFaultsMidSync:
    @pytest.mark.parametrize(
        ("fault", "code"),
        [
            ({"kind": "status", "status": 500}, "provider_unavailable"),
            ({"kind": "status", "status": 429, "retry_after": 1}, "provider_rate_limited"),
            ({"kind": "malformed"}, "provider_bad_response"),
            ({"kind": "drop"}, "provider_unavailable"),
        ],
    )
    async def test_fault_fails_the_run_keeps_earlier_data_and_a_rerun_converges(
        self,
        tmp_root: Path,
        engine: AsyncEngine,
        kv_store: KeyValueStore,
        fault: dict[str, Any],
        code: str,
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig:
            await rig.sync()
            await rig.advance(25 * HOUR)
            # Everything succeeds until the second account's transactions, which keep failing.
            account = await second_account_hash(rig)
            await rig.control(
                "POST",
                "/faults",
                {
                    **fault,
                    "path_prefix": f"/trader/v1/accounts/{account}/transactions",
                    "count": 50,
                },
            )
            before = await rig.transactions()
            failed = await rig.sync()
            assert failed.status is SyncStatus.FAILED
            assert failed.error_code == code, failed
            assert failed.retry_at is not None
            run = await run_row(rig, failed.run_id)
            assert (run.status, run.error_code) == ("failed", code)
            assert run.error_message and "retried" in run.error_message
            # Bounded retries: a few attempts on the failing call, not fifty.
            faults = await rig.control("GET", "/faults")
            assert faults and faults[0]["remaining"] >= 50 - 2 * 3
            # The first account's windows were committed; nothing duplicated or lost.
            after = await rig.transactions()
            assert set(before) <= set(after)
            assert all(after[k].id == before[k].id for k in before)
            provider = await provider_row(rig)
            assert provider.status == "active"
            assert provider.next_sync_at == failed.retry_at
            assert provider.last_error and "Last sync failed" in provider.last_error

            await rig.control("DELETE", "/faults")
            recovered = await rig.sync()
            assert recovered.status is SyncStatus.SUCCEEDED
            assert await rig.stored() == await rig.truth()
            assert (await provider_row(rig)).last_error is None


class TestCrashBetweenWindows:
    async def test_crash_after_a_window_then_rerun_gives_identical_data(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig:
            seen: list[str] = []

            def crash_on_second_window(label: str) -> None:
                seen.append(label)
                if seen.count("window") == 2:
                    raise Crash()

            crashed = await rig.sync(checkpoint=crash_on_second_window)
            assert crashed.status is SyncStatus.FAILED
            assert crashed.error_code == "internal_error"
            partial = await rig.transactions()
            assert len(partial) > 0
            assert await rig.stored() != await rig.truth()

            done = await rig.sync()
            assert done.status is SyncStatus.SUCCEEDED
            assert await rig.stored() == await rig.truth()
            final = await rig.transactions()
            # Rows written before the crash kept their identity; nothing was written twice.
            assert all(final[k].id == partial[k].id for k in partial)
            assert done.added == len(final) - len(partial)

            # And a clean resync of the same data is a no-op.
            state = await fingerprint(rig)
            assert (await rig.sync()).added == 0
            assert await fingerprint(rig) == state

    async def test_killed_run_keeps_its_lease_and_is_taken_over_after_expiry(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig:

            def kill(label: str) -> None:
                if label == "window":
                    raise asyncio.CancelledError()  # like a SIGKILL: no cleanup of the run

            run_id = await rig.queue()
            with pytest.raises(asyncio.CancelledError):
                await rig.engine(checkpoint=kill).run(run_id)
            run = await run_row(rig, run_id)
            assert run.status == "running" and run.lease_expires_at is not None
            # Within the lease nobody else may run it.
            assert await rig.engine().run(run_id) is None
            # After the lease the scheduler re-queues it and a worker completes the work.
            async with session_scope(rig.resources.session_factory) as session:
                requeued = await runs.requeue_expired(
                    session, now=run.lease_expires_at + timedelta(seconds=1), max_attempts=3
                )
            assert [r.run_id for r in requeued] == [run_id]
            outcome = await rig.engine().run(run_id)
            assert outcome is not None and outcome.status is SyncStatus.SUCCEEDED
            assert (await run_row(rig, run_id)).attempt == 2
            assert await rig.stored() == await rig.truth()


class TestReauthRequired:
    async def test_dead_refresh_token_marks_provider_and_fails_the_run(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig:
            await rig.control("POST", "/users/demo/tokens", {"action": "revoke-refresh"})
            await rig.control("POST", "/users/demo/tokens", {"action": "expire-access"})
            outcome = await rig.sync()
            assert outcome.status is SyncStatus.FAILED
            assert outcome.error_code == "reauth_required"
            assert outcome.retry_at is None
            provider = await provider_row(rig)
            assert provider.status == "reauth_required"
            assert provider.next_sync_at is None
            # A queued run of a provider needing reauth fails at once, without calls.
            calls = await trader_calls(rig)
            again = await rig.sync()
            assert again.error_code == "reauth_required"
            assert await trader_calls(rig) == calls


class TestOneRunPerProvider:
    async def test_two_triggers_at_once_give_one_run(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig:

            async def trigger() -> Any:
                async with session_scope(rig.resources.session_factory) as session:
                    return await request_sync(
                        session,
                        rig.resources,
                        user_id=rig.user_id,
                        provider_id=rig.provider_id,
                        trigger=SyncTrigger.MANUAL,
                    )

            first, second = await asyncio.gather(trigger(), trigger())
            assert first.run.id == second.run.id
            assert sorted([first.created, second.created]) == [False, True]

            # Two workers handed the same run: one runs it, the other does nothing.
            outcomes = await asyncio.gather(
                rig.engine().run(first.run.id), rig.engine().run(first.run.id)
            )
            assert sorted(o is None for o in outcomes) == [False, True]
            assert await rig.stored() == await rig.truth()

    async def test_provider_that_is_not_active_fails_its_queued_run(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig:
            run_id = await rig.queue()
            async with session_scope(rig.resources.session_factory) as session:
                row = await session.get(Provider, rig.provider_id)
                assert row is not None
                row.status = "disconnected"
            outcome = await rig.engine().run(run_id)
            assert outcome is not None and outcome.error_code == "provider_not_connected"
