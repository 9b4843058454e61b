"""The sliding-window arithmetic behind the per-user budget (`core.budget.WindowCounts`)."""

from __future__ import annotations

import pytest

from dashtam.core.budget import WindowCounts


def counts(*, current: int, previous: int, elapsed: float, limit: int = 10) -> WindowCounts:
    return WindowCounts(
        limit=limit, window=60.0, elapsed=elapsed, current=current, previous=previous
    )


class TestWindowCounts:
    def test_previous_window_weighs_by_its_remaining_overlap(self) -> None:
        early, late = (
            counts(current=2, previous=8, elapsed=15),
            counts(current=2, previous=8, elapsed=45),
        )

        assert early.used == pytest.approx(8 * 0.75 + 2)
        assert late.used == pytest.approx(8 * 0.25 + 2)

    def test_remaining_is_what_fits_now_and_reset_is_the_window_end(self) -> None:
        state = counts(current=3, previous=4, elapsed=30).state(allowed=True)

        assert (state.allowed, state.limit, state.remaining) == (True, 10, 5)
        assert state.reset_after == 30
        assert state.retry_after == 0

    def test_remaining_never_goes_negative(self) -> None:
        assert counts(current=10, previous=10, elapsed=1).state(allowed=False).remaining == 0

    def test_spent_current_window_waits_for_the_next_one(self) -> None:
        # All 10 hits in this window: the next window opens in 20 s, and one more hit fits
        # once a tenth of these has slid out of the sliding window (6 s into it).
        state = counts(current=10, previous=0, elapsed=40).state(allowed=False)

        assert state.retry_after == pytest.approx(20 + 6, abs=1)

    def test_spent_by_the_previous_window_waits_until_enough_slides_out(self) -> None:
        # 10 previous + 5 current at t=30 s: weighted 10; one more needs 10*(60-t)/60 <= 4.
        seconds = counts(current=5, previous=10, elapsed=30).seconds_until_admitted()

        assert seconds == pytest.approx(36 - 30)

    def test_refusal_always_asks_for_at_least_one_second(self) -> None:
        state = counts(current=5, previous=10, elapsed=35.9).state(allowed=False)

        assert state.retry_after >= 1


class TestUnspentLeases:
    def test_units_leased_but_not_spent_still_count_as_remaining(self) -> None:
        state = counts(current=8, previous=0, elapsed=10).state(allowed=True, unspent=5)

        assert state.remaining == 2 + 5
