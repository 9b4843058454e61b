"""Full and incremental syncs of the simulator's `demo` user, checked against its ground truth."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dashtam.core.database import session_scope
from dashtam.core.kv import KeyValueStore
from dashtam.models.financial import (
    BalanceSnapshot,
    FinancialChangeCounter,
    Position,
    SyncRun,
    SyncStatus,
)
from dashtam.models.provider import Provider
from tests.integration.sync.rig import SyncRig, sync_rig

HOUR = 3600


async def fingerprint(rig: SyncRig) -> dict[str, Any]:
    """Everything a no-op sync must leave untouched."""
    rows = await rig.transactions()
    async with session_scope(rig.resources.session_factory) as session:
        balances = (await session.execute(select(func.count()).select_from(BalanceSnapshot))).one()
        positions = (
            await session.execute(select(Position.id, Position.quantity, Position.market_value))
        ).all()
        counter = (
            await session.execute(
                select(FinancialChangeCounter.value).where(
                    FinancialChangeCounter.user_id == rig.user_id  # type: ignore[arg-type]
                )
            )
        ).scalar_one()
    return {
        "rows": {
            k: (t.id, t.last_modified_at, t.change_seq, t.content_hash, t.removed_at)
            for k, t in rows.items()
        },
        "balances": balances[0],
        "positions": sorted(map(tuple, positions)),
        "counter": counter,
    }


async def provider_row(rig: SyncRig) -> Provider:
    async with session_scope(rig.resources.session_factory) as session:
        row = await session.get(Provider, rig.provider_id)
        assert row is not None
        return row


async def run_row(rig: SyncRig, run_id: uuid.UUID) -> SyncRun:
    async with session_scope(rig.resources.session_factory) as session:
        row = await session.get(SyncRun, run_id)
        assert row is not None
        return row


class TestFullSync:
    async def test_stored_raw_payloads_are_scrubbed_and_exact(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig:
            outcome = await rig.sync()
            assert outcome.status is SyncStatus.SUCCEEDED, outcome
            summary = await rig.control("GET", f"/users/{rig.username}/summary")
            plain = [account["account_number"] for account in summary["accounts"]]
            rows = list((await rig.transactions()).values())
            assert rows and plain
            for row in rows:
                raw = row.raw
                assert raw is not None
                text = json.dumps(raw)
                assert not any(number in text for number in plain), text[:200]
                assert "accountNumber" not in raw
                assert raw["accountNumberLast4"] in {number[-4:] for number in plain}
                assert raw["accountHash"]
                # The raw amount is the institution's exact figure, whatever the backend.
                assert Decimal(str(raw["netAmount"])) == row.amount

    async def test_demo_totals_match_the_simulator_exactly(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig:
            outcome = await rig.sync()
            assert outcome.status is SyncStatus.SUCCEEDED, outcome
            truth = await rig.truth()
            assert await rig.stored() == truth
            assert len(truth) == 2
            assert outcome.accounts == 2
            assert outcome.added == sum(count for count, _ in truth.values())
            assert outcome.modified == outcome.removed == 0
            run = await run_row(rig, outcome.run_id)
            assert (run.status, run.added, run.accounts) == ("succeeded", outcome.added, 2)
            assert run.finished_at is not None and run.lease_expires_at is None
            provider = await provider_row(rig)
            assert provider.last_synced_at is not None
            assert provider.next_sync_at is not None
            assert provider.next_sync_at > provider.last_synced_at

    async def test_resync_of_unchanged_data_writes_nothing(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig:
            await rig.sync()
            before = await fingerprint(rig)
            again = await rig.sync()
            assert again.status is SyncStatus.SUCCEEDED
            assert (again.added, again.modified, again.removed) == (0, 0, 0)
            assert await fingerprint(rig) == before

    async def test_clock_advance_adds_posts_and_removes(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig:
            await rig.sync()
            events = {
                e["name"]: str(e["activity_id"])
                for e in await rig.control("GET", "/users/demo/events")
            }
            first = await rig.transactions()
            dividend = first[events["pending_dividend_posts"]]
            assert dividend.status == "pending"
            assert first[events["pending_withdrawal_cancelled"]].removed_at is None
            assert events["new_trade"] not in first

            # 25 h later: the dividend posted (with its corrected amount), the withdrawal was
            # cancelled, a deposit and a trade appeared. The access token expired meanwhile.
            await rig.advance(25 * HOUR)
            outcome = await rig.sync()
            assert outcome.status is SyncStatus.SUCCEEDED, outcome
            assert await rig.stored() == await rig.truth()
            after = await rig.transactions()
            posted = after[events["pending_dividend_posts"]]
            assert posted.id == dividend.id
            assert posted.status == "posted"
            assert posted.amount != dividend.amount
            assert after[events["pending_withdrawal_cancelled"]].removed_at is not None
            assert events["new_trade"] in after and events["new_deposit"] in after
            assert outcome.removed == 1
            assert outcome.modified >= 1
            assert outcome.added >= 2
            grants = (await rig.control("GET", "/stats"))["token_grants"]
            assert grants.get("refresh_token", 0) >= 1

    async def test_window_splitting_when_a_window_comes_back_full(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig:
            # ~365 rows a year per account: a 40-row page forces every year to be split.
            rig.provider.max_rows_per_call = 40  # type: ignore[misc]
            outcome = await rig.sync()
            assert outcome.status is SyncStatus.SUCCEEDED, outcome
            truth = await rig.truth()
            assert await rig.stored() == truth
            stats = (await rig.control("GET", "/stats"))["requests"]
            calls = sum(v for k, v in stats.items() if k.endswith("/transactions"))
            # Unsplit it would be 2 one-year windows per account; every complete window now
            # holds fewer than 40 rows, so there must be at least rows/40 of them.
            assert calls >= sum(count for count, _ in truth.values()) / 40 > 2 * 2
