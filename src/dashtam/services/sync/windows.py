"""Date windows and timing policy of the sync engine. Pure functions, no I/O.

Institutions answer transaction queries per date window (Schwab: at most a year and at most
3000 rows, no paging). The engine walks an account's history newest first with a
`WindowWalker`: it starts with the widest window the institution accepts, halves the window
whenever a reply comes back full (a full page may be truncated), and after each complete
reply sizes the next window from the density it saw, aiming at 80 % of the row maximum.
Bounds are whole seconds and adjacent windows share their boundary instant, so no row can fall
between two windows.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

#: Narrowest window the walker will ask for; a full reply at this width is written as is.
MIN_WINDOW = timedelta(seconds=1)
#: The share of the per-call row maximum the walker aims each window at.
TARGET_FILL = 0.8
#: The most a window may widen after one reply (a quiet stretch is not a promise).
MAX_GROWTH = 4.0


def whole_seconds(moment: datetime) -> datetime:
    """`moment` in UTC with the sub-second part dropped (institutions compare at that grain)."""
    return moment.astimezone(UTC).replace(microsecond=0)


def start_of_day(moment: datetime) -> datetime:
    """Midnight UTC of `moment`'s day."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def history_start(
    now: datetime,
    *,
    initial_days: int,
    last_synced_at: datetime | None,
    overlap_days: int,
    full_history: bool,
) -> datetime:
    """Where an account's transaction fetch begins.

    A first sync (or an account seen for the first time) reaches back `initial_days` from the
    start of today, so a whole first day is included. An incremental sync starts `overlap_days`
    before the previous sync, which re-reads the recent past where pending rows post, amounts
    get corrected and cancellations happen. It never reaches further back than a first sync.

    Args:
        now: The sync's current time.
        initial_days: History depth of a first sync.
        last_synced_at: When the provider last synced successfully (None: never).
        overlap_days: Re-read margin of incremental syncs.
        full_history: Force a first-sync depth (a new account).

    Returns:
        The (inclusive) start instant, UTC, whole seconds.
    """
    deepest = start_of_day(now) - timedelta(days=initial_days)
    if full_history or last_synced_at is None:
        return deepest
    incremental = start_of_day(last_synced_at - timedelta(days=overlap_days))
    return max(deepest, incremental)


@dataclass
class WindowWalker:
    """Walks `[start, end]` newest first in windows the institution can answer completely.

    Use: `window = walker.next()`; fetch it; then `walker.full(window)` when the reply had
    the per-call maximum of rows (the same end is retried with half the width), or
    `walker.done(window, rows)` to move on to the older part. `next()` returns None when the
    whole range is covered.

    Attributes:
        start: Oldest instant wanted (inclusive).
        end: Newest instant wanted (inclusive).
        max_window: Widest window the institution accepts.
        max_rows: Rows per call that mean "possibly truncated".
        width: The current window width (adapts to the density of the account).
        requests: Windows handed out so far.
        splits: How many times a full reply forced a narrower window.
    """

    start: datetime
    end: datetime
    max_window: timedelta
    max_rows: int
    width: timedelta | None = None
    requests: int = 0
    splits: int = 0

    def __post_init__(self) -> None:
        self.start = whole_seconds(self.start)
        self.end = whole_seconds(self.end)
        if self.max_window < MIN_WINDOW:
            raise ValueError("max_window must be at least one second")
        if self.width is None:
            self.width = self.max_window
        self._cursor: datetime | None = self.end if self.end > self.start else None

    @property
    def finished(self) -> bool:
        """Whether the whole range has been covered."""
        return self._cursor is None

    def remaining_estimate(self) -> int:
        """Windows still expected at the current width (for progress bars)."""
        if self._cursor is None:
            return 0
        assert self.width is not None
        return max(1, math.ceil((self._cursor - self.start) / self.width))

    def next(self) -> tuple[datetime, datetime] | None:
        """The next window to fetch, newest first; None when done."""
        if self._cursor is None:
            return None
        assert self.width is not None
        lo = max(self.start, self._cursor - self.width)
        self.requests += 1
        return lo, self._cursor

    def can_split(self, window: tuple[datetime, datetime]) -> bool:
        """Whether `window` is wider than the narrowest window we ask for."""
        lo, hi = window
        return hi - lo > MIN_WINDOW

    def full(self, window: tuple[datetime, datetime], oldest: datetime | None = None) -> None:
        """The reply to `window` was full: retry its end narrower.

        Without more to go on the width halves. When the reply's oldest row is known, the
        reply covered at most `[oldest, end]`: if that is less than the window (institutions
        answer newest first), the next width aims at `TARGET_FILL` of the per-call maximum
        over that span, so one refetch usually suffices instead of a cascade of halvings
        (each of which downloads a full, discarded reply). Never wider than half.
        """
        lo, hi = window
        seconds = max(1, int((hi - lo).total_seconds()) // 2)
        if oldest is not None and lo <= oldest <= hi:
            covered = int((hi - oldest).total_seconds())
            seconds = min(seconds, max(1, int(covered * TARGET_FILL)))
        self.width = max(MIN_WINDOW, timedelta(seconds=seconds))
        self.splits += 1

    def done(self, window: tuple[datetime, datetime], rows: int) -> None:
        """`window` was fetched completely (`rows` rows): continue with the older part."""
        lo, _hi = window
        assert self.width is not None
        if lo <= self.start:
            self._cursor = None
            return
        # Adjacent windows share the boundary instant: a row stamped exactly there is read
        # twice (the upsert is idempotent) rather than missed.
        self._cursor = lo
        # Aim the next window at a fill of TARGET_FILL of the per-call maximum, judging the
        # density by this window: fewer, fuller calls (each costs a round trip and a unit of
        # work), while the margin keeps the next reply from coming back full (and refetched).
        # Growth is capped per step so one quiet stretch does not jump straight to a window
        # that is certain to overflow; a full reply still halves the width (`full`).
        target = self.max_rows * TARGET_FILL
        factor = min(MAX_GROWTH, target / rows) if rows > 0 else MAX_GROWTH
        seconds = max(MIN_WINDOW.total_seconds(), int(self.width.total_seconds() * factor))
        self.width = min(self.max_window, timedelta(seconds=seconds))


def backoff_delay(
    failures: int,
    *,
    base_seconds: float,
    cap_seconds: float,
    rand: Callable[[], float] = random.random,
) -> timedelta:
    """Delay before retrying after `failures` consecutive failed syncs.

    Exponential (`base * 2^(failures-1)`), capped, with ±20 % jitter so connections that
    failed together (an institution outage) do not all retry in the same second.
    """
    exponent = max(0, failures - 1)
    delay = min(cap_seconds, base_seconds * (2 ** min(exponent, 30)))
    jitter = 0.8 + 0.4 * rand()
    return timedelta(seconds=max(1.0, delay * jitter))


def next_scheduled_sync(
    now: datetime,
    *,
    interval_minutes: int,
    jitter: float,
    rand: Callable[[], float] = random.random,
) -> datetime:
    """When a connection that just synced should sync again: interval ± jitter."""
    factor = 1 + jitter * (2 * rand() - 1)
    return whole_seconds(now + timedelta(minutes=interval_minutes * factor))
