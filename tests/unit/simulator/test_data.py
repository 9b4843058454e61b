"""The deterministic generator: determinism, volume, windows, lookups and clock-driven evolution."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from dashtam.simulator.data import (
    ACH_CANCEL_AFTER,
    DAY,
    HOUR,
    Dataset,
    Kind,
    decode_activity_id,
    epoch,
)

START = datetime(2025, 6, 16, 12, 0, tzinfo=UTC)


def make_dataset(seed: int = 7, start: datetime = START, whale_years: int = 6) -> Dataset:
    return Dataset(seed=seed, start=start, whale_years=whale_years)


def demo_margin(dataset: Dataset):  # type: ignore[no-untyped-def]
    return dataset.users["demo"].accounts[0]


class TestDeterminism:
    def test_two_instances_with_the_same_seed_produce_identical_rows(self) -> None:
        first, second = make_dataset(), make_dataset()
        for username in ("demo", "whale"):
            for a, b in zip(
                first.users[username].accounts, second.users[username].accounts, strict=True
            ):
                assert a.hash == b.hash
                lo = first.start - 200 * DAY
                assert first.window(a, lo, first.start, first.start) == second.window(
                    b, lo, second.start, second.start
                )

    def test_another_seed_gives_other_accounts_and_rows(self) -> None:
        first, other = make_dataset(seed=1), make_dataset(seed=2)
        a, b = demo_margin(first), demo_margin(other)
        assert a.number != b.number
        assert first.window(a, first.start - 90 * DAY, first.start, first.start) != other.window(
            b, other.start - 90 * DAY, other.start, other.start
        )

    def test_a_day_depends_only_on_seed_account_and_date_not_on_the_start(self) -> None:
        early = make_dataset(start=START)
        later = make_dataset(start=datetime(2025, 8, 1, tzinfo=UTC))
        acct = demo_margin(early)
        ordinal = datetime(2025, 3, 3, tzinfo=UTC).toordinal()
        assert early.day(acct, ordinal) == later.day(demo_margin(later), ordinal)

    def test_hashes_are_64_upper_hex_and_account_numbers_8_digits(self) -> None:
        dataset = make_dataset()
        for _, acct in dataset.accounts_by_hash.values():
            assert len(acct.hash) == 64
            assert acct.hash == acct.hash.upper()
            int(acct.hash, 16)
            assert len(acct.number) == 8 and acct.number.isdigit()


class TestUsers:
    def test_demo_has_a_margin_and_a_cash_account_whale_one_and_empty_none(self) -> None:
        users = make_dataset().users
        assert [a.type for a in users["demo"].accounts] == ["MARGIN", "CASH"]
        assert len(users["whale"].accounts) == 1
        assert users["empty"].accounts == ()

    def test_demo_history_covers_two_years_with_every_kind(self) -> None:
        dataset = make_dataset()
        acct = demo_margin(dataset)
        rows = dataset.window(acct, 0, dataset.start, dataset.start, include_cancelled=True)
        assert min(r.time for r in rows) < dataset.start - 700 * DAY
        assert {Kind(r.kind) for r in rows} == set(Kind)
        assert any(r.pending(dataset.start) for r in rows)


class TestWhale:
    def test_has_at_least_100k_rows_generated_quickly(self) -> None:
        dataset = make_dataset()
        whale = dataset.users["whale"].accounts[0]
        started = time.perf_counter()
        totals = dataset.totals(whale, dataset.start)
        elapsed = time.perf_counter() - started
        assert totals.transaction_count >= 100_000
        assert elapsed < 5.0, f"whale generation took {elapsed:.2f}s"

    def test_capped_window_keeps_the_newest_rows(self) -> None:
        dataset = make_dataset()
        whale = dataset.users["whale"].accounts[0]
        lo = dataset.start - 365 * DAY
        capped = dataset.window(whale, lo, dataset.start, dataset.start, limit=3000)
        full = dataset.window(whale, lo, dataset.start, dataset.start)
        assert len(full) > 3000
        assert capped == full[:3000]
        assert [r.time for r in capped] == sorted((r.time for r in capped), reverse=True)


class TestWindow:
    def test_rows_after_now_and_before_the_history_start_do_not_exist(self) -> None:
        dataset = make_dataset()
        acct = demo_margin(dataset)
        rows = dataset.window(acct, 0, dataset.start + 30 * DAY, dataset.start)
        assert max(r.time for r in rows) <= dataset.start
        assert min(r.time for r in rows) >= dataset.opened_at(acct)

    def test_type_and_symbol_filters(self) -> None:
        dataset = make_dataset()
        acct = demo_margin(dataset)
        lo = dataset.start - 365 * DAY
        trades = dataset.window(acct, lo, dataset.start, dataset.start, types=frozenset({"TRADE"}))
        assert trades and all(r.type == "TRADE" for r in trades)
        aapl = dataset.window(acct, lo, dataset.start, dataset.start, symbol="AAPL")
        assert aapl and all(r.symbol == "AAPL" for r in aapl)


class TestFind:
    def test_finds_generated_and_scripted_rows_by_id(self) -> None:
        dataset = make_dataset()
        acct = demo_margin(dataset)
        rows = dataset.window(acct, dataset.start - 60 * DAY, dataset.start, dataset.start)
        for row in rows:
            assert dataset.find(acct, row.activity_id, dataset.start) == row

    def test_other_accounts_ids_and_future_rows_are_not_found(self) -> None:
        dataset = make_dataset()
        margin, ira = dataset.users["demo"].accounts
        row = dataset.window(margin, dataset.start - 30 * DAY, dataset.start, dataset.start)[-1]
        assert dataset.find(ira, row.activity_id, dataset.start) is None
        new_trade = {e.name: e for e in dataset.scripted_events(margin)}["new_trade"]
        assert dataset.find(margin, new_trade.activity_id, dataset.start) is None
        assert dataset.find(margin, 12345, dataset.start) is None

    def test_ids_decode_to_account_day_and_sequence(self) -> None:
        dataset = make_dataset()
        acct = dataset.users["whale"].accounts[0]
        ordinal = START.toordinal() - 3
        rows = dataset.day(acct, ordinal)
        assert decode_activity_id(rows[5].activity_id) == (acct.key, ordinal, 5)


class TestEvolution:
    def test_scripted_rows_post_cancel_and_appear_as_the_clock_moves(self) -> None:
        dataset = make_dataset()
        acct = demo_margin(dataset)
        events = {e.name: e.activity_id for e in dataset.scripted_events(acct)}
        now, later = dataset.start, dataset.start + DAY

        def ids(at: int) -> set[int]:
            return {r.activity_id for r in dataset.window(acct, at - 5 * DAY, at, at)}

        dividend_now = dataset.find(acct, events["pending_dividend_posts"], now)
        assert dividend_now is not None and dividend_now.pending(now)
        assert dividend_now.net_at(now) == 1840
        assert not dividend_now.pending(later) and dividend_now.net_at(later) == 1842

        assert events["pending_withdrawal_cancelled"] in ids(now)
        assert events["pending_withdrawal_cancelled"] not in ids(later)
        assert events["new_deposit"] not in ids(now) and events["new_deposit"] in ids(later)
        assert events["new_trade"] not in ids(now) and events["new_trade"] in ids(later)

    def test_generated_ach_rows_stay_pending_a_day_and_some_get_cancelled(self) -> None:
        dataset = make_dataset()
        acct = dataset.users["whale"].accounts[0]
        rows = dataset.window(
            acct, dataset.start - 60 * DAY, dataset.start, dataset.start, include_cancelled=True
        )
        ach = [r for r in rows if r.type in ("ACH_RECEIPT", "ACH_DISBURSEMENT")]
        assert all(r.post_at == r.time + DAY for r in ach)
        cancelled = [r for r in ach if r.cancel_at]
        assert cancelled and all(r.cancel_at == r.time + ACH_CANCEL_AFTER for r in cancelled)
        row = ach[0]
        assert row.pending(row.time) and not row.pending(row.time + DAY)

    def test_totals_grow_as_new_rows_appear(self) -> None:
        dataset = make_dataset()
        acct = demo_margin(dataset)
        before = dataset.totals(acct, dataset.start)
        after = dataset.totals(acct, dataset.start + 2 * DAY)
        assert after.transaction_count > before.transaction_count


class TestTotals:
    def test_match_the_rows_the_windows_return(self) -> None:
        dataset = make_dataset()
        for acct in dataset.users["demo"].accounts:
            for as_of in (dataset.start, dataset.start + 13 * HOUR, dataset.start + 3 * DAY):
                rows = dataset.window(acct, 0, as_of, as_of)
                totals = dataset.totals(acct, as_of)
                assert totals.transaction_count == len(rows)
                assert totals.net_cents == sum(r.net_at(as_of) for r in rows)
                assert totals.pending_count == sum(r.pending(as_of) for r in rows)

    def test_cached_settled_days_give_the_same_answer_as_a_fresh_dataset(self) -> None:
        warm = make_dataset()
        acct = warm.users["whale"].accounts[0]
        warm.totals(acct, warm.start)
        at = epoch(START) + 5 * DAY
        assert warm.totals(acct, at) == make_dataset().totals(acct, at)


class TestWindowOrderAndFilters:
    def test_window_equals_a_brute_force_filter_and_sort_over_the_days(self) -> None:
        # `window` relies on each day being sorted by (time, id); check it against the plain
        # definition: every visible row of the range, filtered, newest first.
        dataset = make_dataset()
        now = dataset.start + 7 * HOUR
        for acct in (demo_margin(dataset), dataset.users["whale"].accounts[0]):
            lo, hi = now - 20 * DAY, now
            for include_cancelled in (False, True):
                for types in (None, frozenset({"TRADE"}), frozenset({"ACH_RECEIPT", "JOURNAL"})):
                    for symbol in (None, "AAPL", "NOPE"):
                        got = dataset.window(
                            acct,
                            lo,
                            hi,
                            now,
                            include_cancelled=include_cancelled,
                            types=types,
                            symbol=symbol,
                        )
                        ordinals = range(lo // DAY + 719_163, hi // DAY + 719_164)
                        everything = [t for o in ordinals for t in dataset.day(acct, o)]
                        everything += [t for _, t in dataset._scripted.get(acct.key, [])]
                        expected = sorted(
                            (
                                t
                                for t in everything
                                if lo <= t.time <= min(hi, now)
                                and t.time >= dataset.opened_at(acct)
                                and (include_cancelled or not t.cancelled(now))
                                and (types is None or t.type in types)
                                and (symbol is None or t.symbol == symbol)
                            ),
                            key=lambda t: (t.time, t.activity_id),
                            reverse=True,
                        )
                        assert got == expected
