"""Window planning: depth, overlap, splitting full replies, backoff and schedule jitter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashtam.services.sync.windows import (
    WindowWalker,
    backoff_delay,
    history_start,
    next_scheduled_sync,
)

NOW = datetime(2025, 6, 16, 12, 34, 56, 789000, tzinfo=UTC)


class TestHistoryStart:
    def test_first_sync_reaches_back_whole_days(self) -> None:
        start = history_start(
            NOW, initial_days=730, last_synced_at=None, overlap_days=30, full_history=False
        )
        assert start == datetime(2023, 6, 17, tzinfo=UTC)

    def test_incremental_sync_overlaps_the_previous_one(self) -> None:
        last = NOW - timedelta(hours=6)
        start = history_start(
            NOW, initial_days=730, last_synced_at=last, overlap_days=30, full_history=False
        )
        assert start == datetime(2025, 5, 17, tzinfo=UTC)

    def test_new_account_gets_full_history_and_never_more(self) -> None:
        last = NOW - timedelta(days=3000)
        deepest = history_start(
            NOW, initial_days=730, last_synced_at=None, overlap_days=30, full_history=False
        )
        assert (
            history_start(
                NOW, initial_days=730, last_synced_at=NOW, overlap_days=30, full_history=True
            )
            == deepest
        )
        assert (
            history_start(
                NOW, initial_days=730, last_synced_at=last, overlap_days=30, full_history=False
            )
            == deepest
        )


def walk(
    times: list[int], start: int, end: int, max_window: int, cap: int, *, oldest: bool = False
) -> tuple[set[int], int]:
    """Drive a walker against a fake institution that truncates at `cap` (newest kept).

    With `oldest`, a full reply tells the walker the time of its oldest row.
    """
    base = datetime(2020, 1, 1, tzinfo=UTC)
    walker = WindowWalker(
        start=base + timedelta(seconds=start),
        end=base + timedelta(seconds=end),
        max_window=timedelta(seconds=max_window),
        max_rows=cap,
    )
    got: set[int] = set()
    calls = 0
    while (window := walker.next()) is not None:
        calls += 1
        assert calls < 10_000
        lo, hi = (int((w - base).total_seconds()) for w in window)
        assert 0 < hi - lo <= max_window or hi == lo
        rows = sorted((t for t in times if lo <= t <= hi), reverse=True)[:cap]
        if len(rows) >= cap and walker.can_split(window):
            walker.full(window, base + timedelta(seconds=rows[-1]) if oldest else None)
            continue
        got.update(rows)
        walker.done(window, len(rows))
    return got, calls


class TestWindowWalker:
    def test_sparse_history_takes_one_call_per_max_window(self) -> None:
        times = list(range(0, 1000, 10))
        got, calls = walk(times, 0, 1000, max_window=500, cap=3000)
        assert got == set(times) and calls == 2

    def test_full_reply_is_split_until_complete(self) -> None:
        times = list(range(0, 1000))  # one row a second, cap 100
        got, calls = walk(times, 0, 999, max_window=1000, cap=100)
        assert got == set(times)
        assert calls > 10

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(st.integers(min_value=0, max_value=5000), max_size=400),
        st.integers(min_value=2, max_value=50),
        st.integers(min_value=2, max_value=6000),
    )
    def test_every_row_is_fetched_whatever_the_density(
        self, times: list[int], cap: int, max_window: int
    ) -> None:
        # Distinct instants below the cap per second: the walker can always finish.
        counts: dict[int, int] = {}
        kept = []
        for t in times:
            if counts.get(t, 0) < cap - 1:
                counts[t] = counts.get(t, 0) + 1
                kept.append(t)
        got, _ = walk(kept, 0, 5000, max_window=max_window, cap=cap)
        assert got == set(kept)
        got, _ = walk(kept, 0, 5000, max_window=max_window, cap=cap, oldest=True)
        assert got == set(kept)

    def test_a_full_reply_sizes_the_refetch_from_its_oldest_row(self) -> None:
        # One row a second, cap 100, a 10,000 s window: halving needs 7 discarded full
        # replies before the first complete one; the oldest row's time needs one.
        times = list(range(0, 10_000))
        halving = walk(times, 0, 9_999, max_window=10_000, cap=100)
        sized = walk(times, 0, 9_999, max_window=10_000, cap=100, oldest=True)
        assert halving[0] == sized[0] == set(times)
        assert sized[1] < halving[1]
        end = NOW.replace(microsecond=0)
        walker = WindowWalker(
            start=end - timedelta(seconds=10_000),
            end=end,
            max_window=timedelta(seconds=10_000),
            max_rows=100,
        )
        window = walker.next()
        assert window is not None
        walker.full(window, end - timedelta(seconds=99))
        lo, hi = walker.next() or window
        assert hi == end and (hi - lo) == timedelta(seconds=79)  # 80 % of what held 100 rows
        # An oldest row outside the window (or at its start) is no information: halve.
        walker.full((lo, hi), end - timedelta(days=1))
        assert walker.width == timedelta(seconds=39)

    def test_windows_are_sized_for_a_high_fill_without_coming_back_full(self) -> None:
        # Uniform density (one row every 10 s), cap 300: after the first complete window the
        # walker aims at 80 % of the cap, so later replies are well filled and never full.
        times = list(range(0, 200_000, 10))
        base = datetime(2020, 1, 1, tzinfo=UTC)
        walker = WindowWalker(
            start=base,
            end=base + timedelta(seconds=199_999),
            max_window=timedelta(days=1),
            max_rows=300,
        )
        fills: list[int] = []
        full = 0
        while (window := walker.next()) is not None:
            lo, hi = (int((w - base).total_seconds()) for w in window)
            rows = sum(1 for t in times if lo <= t <= hi)
            if rows >= 300 and walker.can_split(window):
                walker.full(window)
                full += 1
                continue
            walker.done(window, rows)
            fills.append(rows)
        assert sum(fills) >= len(times)  # shared boundaries may count a row twice
        steady = fills[1:-1]
        assert steady and all(200 <= rows < 300 for rows in steady)
        assert full <= 12  # only the initial halving from the one-day maximum

    def test_quiet_stretch_widens_at_most_fourfold_per_window(self) -> None:
        walker = WindowWalker(
            start=NOW - timedelta(days=300), end=NOW, max_window=timedelta(days=365), max_rows=100
        )
        walker.width = timedelta(days=1)
        window = walker.next()
        assert window is not None
        walker.done(window, 0)
        assert walker.width == timedelta(days=4)

    def test_empty_range_has_no_windows(self) -> None:
        walker = WindowWalker(start=NOW, end=NOW, max_window=timedelta(days=1), max_rows=10)
        assert walker.next() is None and walker.finished


class TestTiming:
    @pytest.mark.parametrize(("failures", "low", "high"), [(1, 240, 360), (2, 480, 720)])
    def test_backoff_doubles_with_jitter(self, failures: int, low: float, high: float) -> None:
        rng = random.Random(1)
        for _ in range(50):
            delay = backoff_delay(failures, base_seconds=300, cap_seconds=3600, rand=rng.random)
            assert low <= delay.total_seconds() <= high

    def test_backoff_is_capped(self) -> None:
        delay = backoff_delay(30, base_seconds=300, cap_seconds=3600, rand=lambda: 1.0)
        assert delay == timedelta(seconds=3600 * 1.2)

    def test_next_sync_spreads_around_the_interval(self) -> None:
        early = next_scheduled_sync(NOW, interval_minutes=360, jitter=0.1, rand=lambda: 0.0)
        late = next_scheduled_sync(NOW, interval_minutes=360, jitter=0.1, rand=lambda: 1.0)
        assert early == (NOW + timedelta(minutes=324)).replace(microsecond=0)
        assert late == (NOW + timedelta(minutes=396)).replace(microsecond=0)
