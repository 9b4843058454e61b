"""The engine's in-loop normalisation: chunked, yet one record per external id, last one wins."""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from dashtam.core import gc_pauses
from dashtam.models.financial import (
    AccountSnapshot,
    TransactionData,
    TransactionStatus,
    TransactionType,
)
from dashtam.services.sync.engine import _NORMALISE_CHUNK, _normalise, _older_objects_frozen
from dashtam.services.sync.normalisers import SchwabNormaliser

AT = datetime(2025, 6, 16, 12, 0, tzinfo=UTC)


class CountingNormaliser:
    """Maps `{"id", "amount"}` payloads and records the size of every call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def accounts(
        self, payloads: Sequence[Mapping[str, Any]], preferences: Mapping[str, Any] | None
    ) -> list[AccountSnapshot]:
        raise NotImplementedError

    def oldest_time(self, payloads: Sequence[Mapping[str, Any]]) -> datetime | None:
        return AT if payloads else None

    def transactions(self, payloads: Sequence[Mapping[str, Any]]) -> list[TransactionData]:
        self.calls.append(len(payloads))
        by_id: dict[str, TransactionData] = {}
        for payload in payloads:
            by_id[payload["id"]] = TransactionData(
                external_id=payload["id"],
                posted_at=AT,
                type=TransactionType.OTHER,
                status=TransactionStatus.POSTED,
                amount=Decimal(payload["amount"]),
            )
        return list(by_id.values())


class TestNormalise:
    async def test_large_windows_are_chunked_and_duplicates_across_chunks_keep_the_last(
        self,
    ) -> None:
        size = 3 * _NORMALISE_CHUNK + 7
        payloads = [{"id": str(i), "amount": "1"} for i in range(size)]
        # The same ids again near the end, in another chunk, with new amounts.
        payloads += [{"id": "0", "amount": "2"}, {"id": "5", "amount": "3"}]
        normaliser = CountingNormaliser()

        rows = await _normalise(normaliser, payloads)

        assert len(normaliser.calls) > 1 and max(normaliser.calls) <= _NORMALISE_CHUNK
        assert [r.external_id for r in rows] == [str(i) for i in range(size)]
        amounts = {r.external_id: r.amount for r in rows}
        assert amounts["0"] == Decimal(2) and amounts["5"] == Decimal(3)
        assert amounts["6"] == Decimal(1)

    async def test_chunked_result_equals_one_call_for_real_schwab_payloads(self) -> None:
        payloads = [
            {
                "activityId": 80_000_000_000 + i % 600,  # duplicates across chunks
                "time": f"2025-03-{1 + i % 28:02d}T14:31:07+0000",
                "type": "ACH_RECEIPT",
                "status": "VALID",
                "netAmount": Decimal(i),
                "transferItems": [],
            }
            for i in range(1_000)
        ]
        schwab = SchwabNormaliser()
        assert await _normalise(schwab, payloads) == schwab.transactions(payloads)


class TestOlderObjectsFrozen:
    def test_nested_runs_freeze_once_and_restore_everything_at_the_last_exit(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Counted through the calls: the frozen-object count itself drifts as objects die.
        calls: list[str] = []
        monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
        monkeypatch.setattr(gc, "unfreeze", lambda: calls.append("unfreeze"))
        thresholds = gc.get_threshold()
        with _older_objects_frozen():
            assert gc.get_threshold()[0] >= thresholds[0]
            with _older_objects_frozen():
                assert calls == ["freeze"]
            assert calls == ["freeze"]  # the outer run is still going
        assert calls == ["freeze", "unfreeze"]
        assert gc.get_threshold() == thresholds

    def test_thawing_after_a_run_keeps_the_start_up_freeze(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[str] = []
        monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
        monkeypatch.setattr(gc, "unfreeze", lambda: calls.append("unfreeze"))
        monkeypatch.setattr(gc, "collect", lambda *a: calls.append("collect") or 0)
        monkeypatch.setattr(gc_pauses, "_startup_frozen", False)
        gc_pauses.freeze_startup()
        calls.clear()
        with _older_objects_frozen():
            pass

        assert calls == ["freeze", "unfreeze", "collect", "freeze"]

    def test_a_failing_run_restores_too(self) -> None:
        thresholds = gc.get_threshold()
        with pytest.raises(RuntimeError), _older_objects_frozen():
            raise RuntimeError("boom")
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == thresholds
