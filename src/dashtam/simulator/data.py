"""Deterministic, lazy transaction generator: the history of each account as a function of time.

Each account's history is cut into UTC days. A day's transactions depend only on (seed, account,
day), so any window is generated on demand, two simulators with the same seed and start time
agree byte for byte, and memory stays small (only per-day totals of settled days are cached).
Rows are compact tuples with integer cents; JSON is rendered per request (see `render.py`).

The clock drives evolution: a row is visible once its `time` has passed, ACH rows stay `PENDING`
for a day, and a few ACH rows are cancelled six hours after they appear. Scripted events around
the start time make that evolution easy to predict in tests (see `scripted_events`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import IntEnum
from typing import NamedTuple

from dashtam.simulator.catalog import INSTRUMENTS, SYMBOL_INDEX, AccountSpec, UserSpec, build_users

DAY = 86_400
HOUR = 3_600
#: How long ACH transfers stay pending, and when a cancelled one disappears.
ACH_PENDING_SECONDS = DAY
ACH_CANCEL_AFTER = 6 * HOUR
#: After this long, nothing about a day can change any more (pending and cancel windows closed).
_SETTLED_AFTER = 2 * DAY
_ID_BASE = 80_000_000_000
_ID_ACCOUNT_STRIDE = 1_000_000_000
_ID_ORDINAL_BASE = 730_000  # ordinals of 2000-01-01 onward stay positive and below 10**6
_SCRIPTED_BASE = 89_900_000_000
MAX_PER_DAY = 999


class Kind(IntEnum):
    """What a generated row is; maps onto Schwab's `TransactionType`."""

    BUY = 0
    SELL = 1
    DIVIDEND = 2
    INTEREST = 3
    ACH_IN = 4
    ACH_OUT = 5
    JOURNAL_IN = 6
    JOURNAL_OUT = 7


TRANSACTION_TYPE: dict[Kind, str] = {
    Kind.BUY: "TRADE",
    Kind.SELL: "TRADE",
    Kind.DIVIDEND: "DIVIDEND_OR_INTEREST",
    Kind.INTEREST: "DIVIDEND_OR_INTEREST",
    Kind.ACH_IN: "ACH_RECEIPT",
    Kind.ACH_OUT: "ACH_DISBURSEMENT",
    Kind.JOURNAL_IN: "JOURNAL",
    Kind.JOURNAL_OUT: "JOURNAL",
}

#: Every `TransactionType` of the spec (the `types` parameter accepts any of them).
TRANSACTION_TYPES: frozenset[str] = frozenset(
    {
        "TRADE",
        "RECEIVE_AND_DELIVER",
        "DIVIDEND_OR_INTEREST",
        "ACH_RECEIPT",
        "ACH_DISBURSEMENT",
        "CASH_RECEIPT",
        "CASH_DISBURSEMENT",
        "ELECTRONIC_FUND",
        "WIRE_OUT",
        "WIRE_IN",
        "JOURNAL",
        "MEMORANDUM",
        "MARGIN_CALL",
        "MONEY_MARKET",
        "SMA_ADJUSTMENT",
    }
)

#: Relative frequencies of generated kinds (buys and sells balance so cash stays plausible).
_WEEKDAY_KINDS = (
    (Kind.BUY,) * 20
    + (Kind.SELL,) * 20
    + (Kind.DIVIDEND,) * 20
    + (Kind.ACH_IN,) * 16
    + (Kind.ACH_OUT,) * 8
    + (Kind.JOURNAL_IN,) * 3
    + (Kind.JOURNAL_OUT,) * 2
)
_WEEKEND_KINDS = tuple(k for k in _WEEKDAY_KINDS if k not in (Kind.BUY, Kind.SELL))


class Txn(NamedTuple):
    """One transaction in compact form (money in integer cents, times in epoch seconds)."""

    activity_id: int
    time: int
    kind: int
    instrument: int  # index into INSTRUMENTS, -1 for cash-only rows
    quantity: int
    price_cents: int
    net_cents: int  # the final (posted) net amount
    pending_net_cents: int  # the net amount while pending
    sec_fee_cents: int
    taf_fee_cents: int
    post_at: int  # PENDING before this time (0: never pending)
    cancel_at: int  # cancelled from this time on (0: never)

    @property
    def type(self) -> str:
        """Schwab's `TransactionType` of this row."""
        return TRANSACTION_TYPE[Kind(self.kind)]

    @property
    def symbol(self) -> str | None:
        """The security's symbol, if the row involves one."""
        return INSTRUMENTS[self.instrument].symbol if self.instrument >= 0 else None

    def cancelled(self, now: int) -> bool:
        """Whether the row is cancelled at `now`."""
        return self.cancel_at != 0 and now >= self.cancel_at

    def pending(self, now: int) -> bool:
        """Whether the row is still pending at `now` (a cancelled row is not pending)."""
        return self.post_at != 0 and now < self.post_at and not self.cancelled(now)

    def net_at(self, now: int) -> int:
        """The net amount (cents) the row shows at `now`."""
        return self.pending_net_cents if self.pending(now) else self.net_cents


@dataclass(frozen=True)
class ScriptedEvent:
    """A hand-placed row whose evolution tests can predict exactly."""

    name: str
    account_hash: str
    activity_id: int
    appears_at: datetime
    posts_at: datetime | None
    cancelled_at: datetime | None


@dataclass(frozen=True)
class AccountTotals:
    """Ground truth for one account at one instant (non-cancelled rows only)."""

    transaction_count: int
    net_cents: int
    pending_count: int


def epoch(moment: datetime) -> int:
    """Whole epoch seconds of an aware datetime."""
    return int(moment.timestamp())


def from_epoch(seconds: int) -> datetime:
    """An aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(seconds, UTC)


def _day_start(ordinal: int) -> int:
    return (ordinal - 719_163) * DAY  # 719_163 is date(1970, 1, 1).toordinal()


def _ordinal(seconds: int) -> int:
    return seconds // DAY + 719_163


def decode_activity_id(activity_id: int) -> tuple[int, int, int] | None:
    """Split a generated id into (account key, day ordinal, sequence), or None if not one."""
    rest = activity_id - _ID_BASE
    if rest < 0 or activity_id >= _SCRIPTED_BASE:
        return None
    key, rest = divmod(rest, _ID_ACCOUNT_STRIDE)
    day, seq = divmod(rest, 1000)
    return key, day + _ID_ORDINAL_BASE, seq


class Dataset:
    """The institution's users and the lazily generated history of their accounts."""

    def __init__(self, *, seed: int, start: datetime, whale_years: int) -> None:
        """Build the catalog for `seed`, with history ending around `start`.

        Args:
            seed: Data seed; same seed and start give identical data.
            start: The simulator clock's initial value (history is placed before it).
            whale_years: Years of history of the `whale` account.
        """
        self.seed = seed
        self.start = epoch(start)
        self.users: dict[str, UserSpec] = build_users(seed, whale_years=whale_years)
        self.accounts_by_hash: dict[str, tuple[UserSpec, AccountSpec]] = {
            acct.hash: (user, acct) for user in self.users.values() for acct in user.accounts
        }
        self._start_ordinal = _ordinal(self.start)
        self._settled_totals: dict[tuple[int, int], tuple[int, int]] = {}
        self._scripted: dict[int, list[tuple[str, Txn]]] = self._build_scripted()

    # --- the timeline ------------------------------------------------------------------------
    def opened_at(self, acct: AccountSpec) -> int:
        """Epoch second from which the account has history."""
        return _day_start(self._start_ordinal - acct.history_days)

    def day(self, acct: AccountSpec, ordinal: int) -> list[Txn]:
        """The generated (not scripted) rows of one UTC day, in time order."""
        # Seeded on purpose: the data must be reproducible, not unpredictable.
        rng = random.Random((self.seed * 1_000_003 + acct.key) * 10_000_019 + ordinal)  # noqa: S311
        count = rng.randint(acct.daily_min, acct.daily_max)
        day_start = _day_start(ordinal)
        weekday = date.fromordinal(ordinal).weekday()
        kinds = _WEEKDAY_KINDS if weekday < 5 else _WEEKEND_KINDS
        rows: list[tuple[int, ...]] = []
        for _ in range(count):
            kind = kinds[rng.randrange(len(kinds))]
            if kind in (Kind.BUY, Kind.SELL):
                offset = 48_600 + rng.randrange(23_400)  # 13:30-20:00 UTC, market hours
            else:
                offset = 5 * HOUR + rng.randrange(17 * HOUR)
            rows.append(self._fields(acct, day_start + offset, kind, rng))
        if date.fromordinal(ordinal).day == 1:
            rows.append(self._fields(acct, day_start + 9 * HOUR, Kind.INTEREST, rng))
        rows.sort(key=lambda r: r[0])
        base = _ID_BASE + acct.key * _ID_ACCOUNT_STRIDE + (ordinal - _ID_ORDINAL_BASE) * 1000
        return [Txn(base + seq, *fields) for seq, fields in enumerate(rows[:MAX_PER_DAY])]

    @staticmethod
    def _fields(acct: AccountSpec, at: int, kind: Kind, rng: random.Random) -> tuple[int, ...]:
        """Every `Txn` field but the id (assigned after the day is sorted by time)."""
        instrument, quantity, price, sec_fee, taf_fee, post_at, cancel_at = -1, 0, 0, 0, 0, 0, 0
        if kind is Kind.BUY or kind is Kind.SELL:
            instrument = acct.traded[rng.randrange(len(acct.traded))]
            base_price = INSTRUMENTS[instrument].price_cents
            price = base_price + rng.randint(-base_price // 5, base_price // 5)
            quantity = rng.randint(1, acct.max_shares)
            gross = quantity * price
            if kind is Kind.BUY:
                net = -gross
            else:
                # SEC fee $27.80 per million and FINRA TAF $0.000166 per share, rounded up.
                sec_fee = -(-gross * 278 // 10_000_000)
                taf_fee = min(-(-quantity * 166 // 10_000), 830)
                net = gross - sec_fee - taf_fee
        elif kind is Kind.DIVIDEND:
            held = [h.instrument for h in acct.holdings if INSTRUMENTS[h.instrument].price > 1]
            instrument = held[rng.randrange(len(held))]
            net = rng.randint(150, 9_000) * (10 if acct.max_shares > 100 else 1)
        elif kind is Kind.INTEREST:
            net = rng.randint(5, 900)
        elif kind is Kind.ACH_IN or kind is Kind.ACH_OUT:
            dollars = rng.randint(100, 5_000) if kind is Kind.ACH_IN else -rng.randint(50, 3_000)
            net = dollars * 100
            post_at = at + ACH_PENDING_SECONDS
            if rng.random() < 0.04:
                cancel_at = at + ACH_CANCEL_AFTER
        else:
            net = rng.randint(50, 1_000) * 100 * (1 if kind is Kind.JOURNAL_IN else -1)
        return (
            at,
            int(kind),
            instrument,
            quantity,
            price,
            net,
            net,
            sec_fee,
            taf_fee,
            post_at,
            cancel_at,
        )

    # --- scripted evolution ------------------------------------------------------------------
    def _build_scripted(self) -> dict[int, list[tuple[str, Txn]]]:
        demo = self.users["demo"].accounts[0]
        s = self.start
        aapl, msft = SYMBOL_INDEX["AAPL"], SYMBOL_INDEX["MSFT"]
        ids = iter(range(_SCRIPTED_BASE + 1, _SCRIPTED_BASE + 100))
        msft_gross = 3 * INSTRUMENTS[msft].price_cents
        rows = [
            # Pending dividend whose amount is corrected when it posts a day after the start.
            (
                "pending_dividend_posts",
                Txn(
                    next(ids),
                    s - 2 * HOUR,
                    Kind.DIVIDEND,
                    aapl,
                    0,
                    0,
                    1_842,
                    1_840,
                    0,
                    0,
                    s + DAY,
                    0,
                ),
            ),
            # Pending ACH withdrawal cancelled twelve hours after the start.
            (
                "pending_withdrawal_cancelled",
                Txn(
                    next(ids),
                    s - HOUR,
                    Kind.ACH_OUT,
                    -1,
                    0,
                    0,
                    -30_000,
                    -30_000,
                    0,
                    0,
                    s + DAY,
                    s + 12 * HOUR,
                ),
            ),
            # A deposit that appears six hours after the start, pending for a day.
            (
                "new_deposit",
                Txn(
                    next(ids),
                    s + 6 * HOUR,
                    Kind.ACH_IN,
                    -1,
                    0,
                    0,
                    100_000,
                    100_000,
                    0,
                    0,
                    s + 30 * HOUR,
                    0,
                ),
            ),
            # A trade that appears twenty hours after the start.
            (
                "new_trade",
                Txn(
                    next(ids),
                    s + 20 * HOUR,
                    Kind.BUY,
                    msft,
                    3,
                    INSTRUMENTS[msft].price_cents,
                    -msft_gross,
                    -msft_gross,
                    0,
                    0,
                    0,
                    0,
                ),
            ),
        ]
        return {demo.key: rows}

    def scripted_events(self, acct: AccountSpec) -> list[ScriptedEvent]:
        """The hand-placed rows of an account (for tests and the control API)."""
        return [
            ScriptedEvent(
                name=name,
                account_hash=acct.hash,
                activity_id=txn.activity_id,
                appears_at=from_epoch(txn.time),
                posts_at=from_epoch(txn.post_at) if txn.post_at else None,
                cancelled_at=from_epoch(txn.cancel_at) if txn.cancel_at else None,
            )
            for name, txn in self._scripted.get(acct.key, [])
        ]

    # --- queries -----------------------------------------------------------------------------
    def window(
        self,
        acct: AccountSpec,
        lo: int,
        hi: int,
        now: int,
        *,
        include_cancelled: bool = False,
        limit: int | None = None,
        types: frozenset[str] | None = None,
        symbol: str | None = None,
    ) -> list[Txn]:
        """Rows with `lo <= time <= hi` visible at `now`, newest first.

        Args:
            acct: The account.
            lo: Window start (epoch seconds, inclusive).
            hi: Window end (epoch seconds, inclusive).
            now: The simulator clock; later rows do not exist yet.
            include_cancelled: Keep cancelled rows (shown as INVALID) instead of hiding them.
            limit: Stop after this many rows (the newest ones are kept).
            types: Only these `TransactionType`s.
            symbol: Only rows involving this symbol.

        Returns:
            Matching rows, newest first (ties by descending id).
        """
        lo = max(lo, self.opened_at(acct))
        hi = min(hi, now)
        if hi < lo:
            return []
        # Filters as integer sets, decided once per query (a whale window is thousands of
        # rows; per-row enum and property lookups were most of the query's cost).
        kinds = (
            None if types is None else frozenset(k for k in Kind if TRANSACTION_TYPE[k] in types)
        )
        if kinds is not None and len(kinds) == len(Kind):
            kinds = None
        instrument = None if symbol is None else SYMBOL_INDEX.get(symbol, -2)

        def keep(txn: Txn) -> bool:
            return (
                lo <= txn.time <= hi
                and (include_cancelled or txn.cancel_at == 0 or now < txn.cancel_at)
                and (kinds is None or txn.kind in kinds)
                and (instrument is None or txn.instrument == instrument)
            )

        found = [t for _, t in self._scripted.get(acct.key, []) if keep(t)]
        # Walk days newest first so a capped query touches only the days it needs. A day is
        # sorted by (time, id) ascending, so its reverse followed by older days' reverses is
        # already the answer's order; only scripted rows (a few, near the start) need a sort.
        ordinal = _ordinal(hi)
        first = _ordinal(lo)
        generated: list[Txn] = []
        while ordinal >= first:
            generated.extend(t for t in reversed(self.day(acct, ordinal)) if keep(t))
            ordinal -= 1
            if limit is not None and len(generated) >= limit + len(found):
                break
        if found:
            rows = sorted(found + generated, key=lambda t: (t.time, t.activity_id), reverse=True)
        else:
            rows = generated
        return rows[:limit] if limit is not None else rows

    def find(self, acct: AccountSpec, activity_id: int, now: int) -> Txn | None:
        """The row with `activity_id` if it exists and is visible at `now` (cancelled included)."""
        for _, txn in self._scripted.get(acct.key, []):
            if txn.activity_id == activity_id:
                return txn if self.opened_at(acct) <= txn.time <= now else None
        decoded = decode_activity_id(activity_id)
        if decoded is None or decoded[0] != acct.key:
            return None
        _, ordinal, seq = decoded
        if not self.opened_at(acct) <= _day_start(ordinal) <= now:
            return None
        rows = self.day(acct, ordinal)
        if seq >= len(rows) or rows[seq].time > now:
            return None
        return rows[seq]

    def totals(self, acct: AccountSpec, as_of: int) -> AccountTotals:
        """Count, net sum and pending count of the non-cancelled rows visible at `as_of`."""
        count = net = pending = 0
        opened = self.opened_at(acct)
        for ordinal in range(_ordinal(opened), _ordinal(max(as_of, opened)) + 1):
            day_start = _day_start(ordinal)
            if day_start + _SETTLED_AFTER <= as_of:
                key = (acct.key, ordinal)
                cached = self._settled_totals.get(key)
                if cached is None:
                    rows = [t for t in self.day(acct, ordinal) if not t.cancelled(as_of)]
                    cached = (len(rows), sum(t.net_cents for t in rows))
                    self._settled_totals[key] = cached
                count += cached[0]
                net += cached[1]
                continue
            for txn in self.day(acct, ordinal):
                if txn.time <= as_of and not txn.cancelled(as_of):
                    count += 1
                    net += txn.net_at(as_of)
                    pending += txn.pending(as_of)
        for _, txn in self._scripted.get(acct.key, []):
            if opened <= txn.time <= as_of and not txn.cancelled(as_of):
                count += 1
                net += txn.net_at(as_of)
                pending += txn.pending(as_of)
        return AccountTotals(count, net, pending)


def create_dataset(*, seed: int, start: datetime, whale_years: int) -> Dataset:
    """Build the dataset (cheap: rows are generated only when asked for)."""
    return Dataset(seed=seed, start=start, whale_years=whale_years)


__all__ = [
    "ACH_CANCEL_AFTER",
    "ACH_PENDING_SECONDS",
    "AccountTotals",
    "Dataset",
    "Kind",
    "ScriptedEvent",
    "TRANSACTION_TYPES",
    "Txn",
    "UserSpec",
    "create_dataset",
    "decode_activity_id",
    "epoch",
    "from_epoch",
]
