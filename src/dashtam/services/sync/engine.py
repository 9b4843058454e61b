"""The sync engine: turn one queued `sync_runs` row into fresh, complete financial data.

One run, step by step:

1. **Claim** the run (atomic, fenced by `attempt`) and take the provider's KV lock; a
   heartbeat renews both while the run is alive, so a killed worker's run expires and the
   scheduler re-queues it.
2. **Accounts**: a fresh access token (`TokenManager.call`: refresh once and retry once on a
   401), then accounts with balances and positions plus the user preferences (nicknames, IRA
   detection), written in one short unit of work.
3. **Transactions** per account, newest first, in windows the institution answers completely
   (`WindowWalker`: ≤ `max_window`, halved while a reply is full, sized from the density seen
   otherwise). Each window is written in its own unit of work together with the lease
   renewal, so a crash loses at most the window in flight, and a worker that lost its lease
   cannot write. Fetching runs ahead: a producer fetches and normalises the next windows
   back to back while the current one is written (at most four waiting, one being written
   and one being fetched).
4. **Finish**: counts, status, `providers.last_synced_at` / `next_sync_at`.

No unit of work ever waits on an upstream call (SQLite has one write lock): the look-ahead
fetches run beside the writes, never inside them. Every write is an idempotent upsert keyed by the
institution's ids, so a rerun after a crash at any point converges to the same data without
duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select

from dashtam.core import gc_pauses
from dashtam.core.database import session_scope
from dashtam.core.kv import KeyValueUnavailable
from dashtam.core.logging import log_event
from dashtam.core.observability import metrics
from dashtam.core.request_context import set_provider_id
from dashtam.core.state import AppResources
from dashtam.core.types import utcnow
from dashtam.models.financial import Account, SyncStatus, TransactionData
from dashtam.models.provider import ProviderStatus
from dashtam.providers.base import Capability
from dashtam.providers.base import Provider as ProviderClient
from dashtam.providers.errors import (
    AccessTokenRejected,
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderUnavailable,
    ReauthRequired,
)
from dashtam.services.connections.context import providers_of
from dashtam.services.connections.errors import NotConnected, ProviderNotFound, TokenRefreshBusy
from dashtam.services.connections.tokens import TokenManager
from dashtam.services.financial.repository import (
    UpsertCounts,
    store_account_snapshots,
    upsert_transactions,
)
from dashtam.services.sync import runs
from dashtam.services.sync.normalisers import NoNormaliser, Normaliser, normaliser_for
from dashtam.services.sync.windows import (
    WindowWalker,
    backoff_delay,
    history_start,
    next_scheduled_sync,
    whole_seconds,
)

logger = logging.getLogger("dashtam.sync")
_accounts = Account.__table__  # type: ignore[attr-defined]

#: Rows normalised per step before yielding to the event loop (a few milliseconds of CPU).
_NORMALISE_CHUNK = 250
#: Fetched windows that may wait for their write (plus one written and one being fetched).
_AHEAD = 4

Phase = Literal["accounts", "transactions", "finishing", "done"]


@dataclass(frozen=True)
class SyncProgress:
    """A progress report (the CLI draws a bar from these).

    Attributes:
        phase: What the engine is doing.
        account_index: 1-based index of the account being synced (0 before the first).
        account_count: Accounts in this sync.
        windows_done: Transaction windows written so far (all accounts).
        windows_estimate: Windows done plus those still expected (grows when windows split).
        rows_fetched: Transactions received so far.
        added: Transactions added so far.
        modified: Transactions modified so far.
        removed: Transactions removed so far.
    """

    phase: Phase
    account_index: int = 0
    account_count: int = 0
    windows_done: int = 0
    windows_estimate: int = 0
    rows_fetched: int = 0
    added: int = 0
    modified: int = 0
    removed: int = 0


ProgressCallback = Callable[[SyncProgress], Awaitable[None] | None]
#: Called after each committed unit of work with its label (tests inject crashes here).
CheckpointHook = Callable[[str], Awaitable[None] | None]


@dataclass(frozen=True)
class SyncOutcome:
    """How a run ended (None from `run` means this worker did not run it)."""

    run_id: uuid.UUID
    status: SyncStatus
    accounts: int
    added: int
    modified: int
    removed: int
    error_code: str | None = None
    error_message: str | None = None
    retry_at: datetime | None = None


class LeaseLost(RuntimeError):
    """Another worker took the run over (our lease expired): stop without writing."""


class SyncFailure(Exception):
    """A classified failure: what the run records and whether a retry is scheduled."""

    def __init__(self, code: str, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry = retry


def classify(exc: BaseException) -> SyncFailure:
    """Map an exception from a run to the error recorded on it (messages are user-facing)."""
    if isinstance(exc, SyncFailure):
        return exc
    if isinstance(exc, ReauthRequired):
        return SyncFailure(
            "reauth_required",
            "The institution needs you to sign in again; re-authorize the connection.",
            retry=False,
        )
    if isinstance(exc, NotConnected | ProviderNotFound):
        return SyncFailure(
            "provider_not_connected", "The connection has no usable tokens.", retry=False
        )
    if isinstance(exc, ProviderRateLimited):
        return SyncFailure(
            "provider_rate_limited",
            "The institution is rate limiting requests; the sync will be retried.",
            retry=True,
        )
    if isinstance(exc, ProviderUnavailable):
        if exc.timeout:
            return SyncFailure(
                "provider_timeout",
                "The institution did not answer in time; the sync will be retried.",
                retry=True,
            )
        return SyncFailure(
            "provider_unavailable",
            "The institution is not available right now"
            + (f" (HTTP {exc.status})" if exc.status else f" ({exc.reason})" if exc.reason else "")
            + "; the sync will be retried.",
            retry=True,
        )
    if isinstance(exc, ProviderBadResponse | ValueError):
        return SyncFailure(
            "provider_bad_response",
            "The institution sent a response we could not read; the sync will be retried.",
            retry=True,
        )
    if isinstance(exc, AccessTokenRejected):
        return SyncFailure(
            "access_token_rejected",
            "The institution rejected a freshly refreshed access token; the sync will be retried.",
            retry=True,
        )
    if isinstance(exc, ProviderRequestRejected):
        return SyncFailure(
            "provider_request_rejected",
            "The institution rejected a request"
            + (f" (HTTP {exc.status})" if exc.status else "")
            + "; the sync will be retried.",
            retry=True,
        )
    if isinstance(exc, TokenRefreshBusy):
        return SyncFailure(
            "token_refresh_busy", "The access token was being refreshed; retrying.", retry=True
        )
    if isinstance(exc, ProviderError):
        return SyncFailure(
            "provider_error", "The institution call failed; the sync will be retried.", retry=True
        )
    if isinstance(exc, NoNormaliser):
        return SyncFailure(
            "provider_not_supported", "This institution cannot be synced yet.", retry=False
        )
    return SyncFailure(
        "internal_error",
        f"The sync failed unexpectedly ({type(exc).__name__}); it will be retried.",
        retry=True,
    )


_frozen_runs = 0
_thresholds = gc.get_threshold()


@contextlib.contextmanager
def _older_objects_frozen() -> Iterator[None]:
    """Keep the garbage collector's full collections off the objects that predate the run.

    A large sync allocates millions of containers (decoded payloads, rows, records), which
    triggers dozens of full collections, each walking every object of the process: measured
    on the whale sync, a fifth of its CPU time. `gc.freeze()` parks the objects that existed
    before the run in the permanent generation, so collections only walk what the run itself
    allocated; `gc.unfreeze()` hands them back when the last concurrent run ends. Garbage is
    still freed by reference counting meanwhile; only cycles among the parked objects wait.
    """
    global _frozen_runs, _thresholds
    if _frozen_runs == 0:
        gc.freeze()
        _thresholds = gc.get_threshold()
        gc.set_threshold(max(_thresholds[0], 20_000), *_thresholds[1:])
    _frozen_runs += 1
    try:
        yield
    finally:
        _frozen_runs -= 1
        if _frozen_runs == 0:
            gc.set_threshold(*_thresholds)
            # Not `gc.unfreeze()`: that would also thaw what the API froze at start-up.
            gc_pauses.thaw()


async def _normalise(
    normaliser: Normaliser, payloads: list[dict[str, Any]]
) -> list[TransactionData]:
    """Normalise a window in small steps on the event loop, one record per external id.

    Not in a thread: the window being written at the same time needs the event loop for its
    many small database round trips, and a CPU-bound thread holding the GIL can delay each of
    them by the interpreter's switch interval. Short steps keep the loop responsive (heartbeats
    included) and let those round trips interleave with the work. Chunks are merged by
    external id with the last record winning, as within one call.
    """
    if len(payloads) <= _NORMALISE_CHUNK:
        return normaliser.transactions(payloads)
    merged: dict[str, TransactionData] = {}
    for start in range(0, len(payloads), _NORMALISE_CHUNK):
        for row in normaliser.transactions(payloads[start : start + _NORMALISE_CHUNK]):
            merged[row.external_id] = row
        await asyncio.sleep(0)
    return list(merged.values())


@dataclass(frozen=True)
class _Ready:
    """A fetched, normalised window waiting to be written."""

    window: tuple[datetime, datetime]
    rows: list[TransactionData]
    #: Fewer rows than the per-call maximum: the window may remove what did not come back.
    complete: bool


@dataclass(frozen=True)
class _Fetched:
    """One fetched window: its row count, and its normalised rows unless it must be split."""

    count: int
    rows: list[TransactionData] | None
    #: For a reply that must be split: its oldest row's time (sizes the narrower window).
    oldest: datetime | None = None


@dataclass
class _Tally:
    accounts: int = 0
    added: int = 0
    modified: int = 0
    removed: int = 0
    rows_fetched: int = 0
    windows_done: int = 0
    window_start: datetime | None = None

    def add(self, counts: UpsertCounts) -> None:
        self.added += counts.added
        self.modified += counts.modified
        self.removed += counts.removed

    def counts(self) -> runs.Counts:
        return runs.Counts(self.accounts, self.added, self.modified, self.removed)


@dataclass
class SyncEngine:
    """Runs sync runs. One engine may run many runs (sequentially or concurrently).

    Attributes:
        resources: Database, KV store, provider registry, settings.
        clock: The current time (tests use the simulator's clock).
        tokens: Hands out fresh access tokens (default: a `TokenManager` over `resources`).
        progress: Receives `SyncProgress` reports.
        checkpoint: Called after each committed unit of work.
        rand: Randomness for jitter (tests pin it).
    """

    resources: AppResources
    clock: Callable[[], datetime] = utcnow
    tokens: TokenManager | None = None
    progress: ProgressCallback | None = None
    checkpoint: CheckpointHook | None = None
    rand: Callable[[], float] = random.random
    _lost: set[uuid.UUID] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.tokens is None:
            self.tokens = TokenManager(self.resources)

    # --- settings ---------------------------------------------------------------------------
    @property
    def _lease(self) -> timedelta:
        return timedelta(seconds=self.resources.settings.sync_lease_seconds)

    def _now(self) -> datetime:
        return self.clock()

    # --- entry point ------------------------------------------------------------------------
    async def run(self, run_id: uuid.UUID) -> SyncOutcome | None:
        """Run one sync run to its end.

        Safe to call for any run id at any time, any number of times (jobs are delivered at
        least once): a run that is finished, or running under a live lease elsewhere, is
        left alone.

        Returns:
            The outcome, or None when this call did not run the run.
        """
        async with session_scope(self.resources.session_factory) as session:
            claim = await runs.claim(session, run_id=run_id, now=self._now(), lease=self._lease)
        if claim is None:
            log_event(logger, "sync.run.skipped", run_id=str(run_id), reason="not_claimable")
            return None
        set_provider_id(str(claim.provider_id))  # every log line of the run names its provider
        if claim.provider_status != ProviderStatus.ACTIVE.value:
            failure = (
                classify(ReauthRequired())
                if claim.provider_status == ProviderStatus.REAUTH_REQUIRED.value
                else SyncFailure(
                    "provider_not_connected",
                    f"The connection is {claim.provider_status}, not active.",
                    retry=False,
                )
            )
            return await self._fail(claim, _Tally(), failure)
        lock_token = f"{claim.run_id}:{claim.attempt}"
        if not await self._lock(claim, lock_token):
            async with session_scope(self.resources.session_factory) as session:
                await runs.release(session, claim, now=self._now())
            log_event(logger, "sync.run.deferred", run_id=str(run_id), reason="provider_locked")
            return None
        heartbeat = asyncio.create_task(self._heartbeat(claim, lock_token))
        tally = _Tally()
        try:
            with _older_objects_frozen():
                return await self._run_claimed(claim, tally)
        except LeaseLost:
            log_event(logger, "sync.run.lease_lost", logging.WARNING, run_id=str(run_id))
            return None
        except Exception as exc:  # every failure is recorded on the run, never lost
            return await self._fail(claim, tally, classify(exc), exc)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await self._unlock(claim, lock_token)
            self._lost.discard(claim.run_id)

    # --- the work ---------------------------------------------------------------------------
    async def _run_claimed(self, claim: runs.Claim, tally: _Tally) -> SyncOutcome:
        started = whole_seconds(self._now())
        log_event(
            logger,
            "sync.run.started",
            run_id=str(claim.run_id),
            provider_id=str(claim.provider_id),
            trigger=claim.trigger,
            attempt=claim.attempt,
        )
        client = providers_of(self.resources).get(claim.provider_key)
        normaliser = normaliser_for(claim.provider_key)
        await self._report(SyncProgress("accounts"))
        account_ids, new_accounts = await self._sync_accounts(
            claim, client, normaliser, tally, started
        )
        settings = self.resources.settings
        walkers: list[tuple[uuid.UUID, str, WindowWalker]] = []
        for external_id, account_id in account_ids.items():
            start = history_start(
                started,
                initial_days=settings.sync_initial_history_days,
                last_synced_at=claim.last_synced_at,
                overlap_days=settings.sync_overlap_days,
                full_history=external_id in new_accounts,
            )
            tally.window_start = min(tally.window_start or start, start)
            walker = WindowWalker(
                start=start,
                end=started,
                max_window=client.max_window,
                max_rows=client.max_rows_per_call,
            )
            # The external id is the institution's account hash, which its transaction call takes.
            walkers.append((account_id, external_id, walker))
        if Capability.TRANSACTIONS in client.capabilities:
            for index, (account_id, account_hash, walker) in enumerate(walkers, start=1):
                await self._sync_transactions(
                    claim,
                    client,
                    normaliser,
                    tally,
                    account_id=account_id,
                    account_hash=account_hash,
                    walker=walker,
                    index=index,
                    walkers=walkers,
                )
        await self._report(self._snapshot("finishing", tally, len(walkers), len(walkers), walkers))
        return await self._succeed(claim, tally, started)

    async def _sync_accounts(
        self,
        claim: runs.Claim,
        client: ProviderClient,
        normaliser: Normaliser,
        tally: _Tally,
        as_of: datetime,
    ) -> tuple[dict[str, uuid.UUID], set[str]]:
        tokens = self.tokens
        assert tokens is not None
        payloads: list[dict[str, Any]] = await tokens.call(
            claim.provider_id, lambda token: client.accounts(token, with_positions=True)
        )
        preferences: Mapping[str, Any] | None = None
        if Capability.USER_PREFERENCE in client.capabilities:
            try:
                preferences = await tokens.call(claim.provider_id, client.user_preference)
            except ReauthRequired:
                raise
            except ProviderError as exc:
                # Nicknames are a nicety; a failing preferences call must not fail the sync.
                log_event(
                    logger,
                    "sync.preferences.unavailable",
                    logging.WARNING,
                    run_id=str(claim.run_id),
                    error_type=type(exc).__name__,
                )
        snapshots = normaliser.accounts(payloads, preferences)
        self._check_lease(claim)
        async with session_scope(self.resources.session_factory) as session:
            known = set(
                (
                    await session.execute(
                        select(_accounts.c.external_id).where(
                            _accounts.c.provider_id == claim.provider_id
                        )
                    )
                )
                .scalars()
                .all()
            )
            ids = await store_account_snapshots(
                session,
                user_id=claim.user_id,
                provider_id=claim.provider_id,
                snapshots=snapshots,
                as_of=as_of,
            )
            tally.accounts = len(ids)
            await self._renew_in(session, claim, tally)
        await self._checkpoint("accounts")
        return ids, {external_id for external_id in ids if external_id not in known}

    async def _sync_transactions(
        self,
        claim: runs.Claim,
        client: ProviderClient,
        normaliser: Normaliser,
        tally: _Tally,
        *,
        account_id: uuid.UUID,
        account_hash: str,
        walker: WindowWalker,
        index: int,
        walkers: Sequence[tuple[uuid.UUID, str, WindowWalker]],
    ) -> None:
        tokens = self.tokens
        assert tokens is not None

        async def fetch(window: tuple[datetime, datetime]) -> _Fetched:
            lo, hi = window

            async def call(token: str) -> list[Any]:
                return await client.transactions(token, account_hash, lo, hi)

            payloads: list[dict[str, Any]] = await tokens.call(claim.provider_id, call)
            count = len(payloads)
            if count >= walker.max_rows and walker.can_split(window):
                # Refetched narrower: do not map it, only see how far back it reached.
                return _Fetched(count, None, normaliser.oldest_time(payloads))
            return _Fetched(count, await _normalise(normaliser, payloads))

        async def produce(queue: asyncio.Queue[_Ready | None]) -> None:
            # The walker only needs each reply's row count to choose the next window, so the
            # fetches run back to back, independent of the writes, until the queue is full.
            window = walker.next()
            while window is not None:
                fetched = await fetch(window)
                tally.rows_fetched += fetched.count
                if fetched.rows is None:
                    walker.full(window, fetched.oldest)
                    lo, hi = window
                    log_event(
                        logger,
                        "sync.window.split",
                        run_id=str(claim.run_id),
                        rows=fetched.count,
                        width_seconds=int((hi - lo).total_seconds()),
                    )
                else:
                    walker.done(window, fetched.count)
                    complete = fetched.count < walker.max_rows
                    await queue.put(_Ready(window, fetched.rows, complete))
                del fetched  # bounded memory: what is queued is all that stays referenced
                window = walker.next()
            await queue.put(None)

        # Windows run ahead of the writes: while one window is written, the next ones are
        # fetched and normalised, so the institution's time, the database's time and our CPU
        # overlap. At most `_AHEAD` windows wait, one is written and one is being fetched; no
        # unit of work ever waits on the institution.
        queue: asyncio.Queue[_Ready | None] = asyncio.Queue(maxsize=_AHEAD)
        producer = asyncio.create_task(produce(queue))
        try:
            while True:
                ready = await self._next_ready(queue, producer)
                if ready is None:
                    break
                await self._write_window(
                    claim,
                    tally,
                    account_id=account_id,
                    rows=ready.rows,
                    window=ready.window,
                    complete=ready.complete,
                )
                del ready
                await self._checkpoint("window")
                await self._report(
                    self._snapshot("transactions", tally, index, len(walkers), walkers)
                )
            await producer  # re-raises a failure that came after the last window
        finally:
            if not producer.done():
                producer.cancel()
                with contextlib.suppress(BaseException):
                    await producer

    @staticmethod
    async def _next_ready(
        queue: asyncio.Queue[_Ready | None], producer: asyncio.Task[None]
    ) -> _Ready | None:
        """The next fetched window, or None at the end; a failed fetch raises here.

        The producer queues None when it is done, so a producer that stopped with the queue
        empty failed: its exception is raised instead of waiting forever.
        """
        getter = asyncio.ensure_future(queue.get())
        try:
            await asyncio.wait({getter, producer}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            getter.cancel()
            raise
        if getter.done():
            return getter.result()
        getter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await getter
        producer.result()  # the producer ended without queueing its end: raise its failure
        return None

    async def _write_window(
        self,
        claim: runs.Claim,
        tally: _Tally,
        *,
        account_id: uuid.UUID,
        rows: list[TransactionData],
        window: tuple[datetime, datetime],
        complete: bool,
    ) -> None:
        """Write one normalised window with the lease renewal, in one unit of work.

        Args:
            claim: The run (its lease fences the write).
            tally: Running counts (updated).
            account_id: Our account id.
            rows: The window's normalised transactions.
            window: The fetched (lo, hi) bounds.
            complete: Whether the reply held fewer than the per-call maximum; a saturated
                reply (full even at the narrowest width) is written but removes nothing.
        """
        lo, hi = window
        if not complete:
            # A full reply even at the narrowest width: keep what came, remove nothing.
            log_event(
                logger,
                "sync.window.saturated",
                logging.WARNING,
                run_id=str(claim.run_id),
                rows=len(rows),
            )
        self._check_lease(claim)
        async with session_scope(self.resources.session_factory) as session:
            counts = await upsert_transactions(
                session,
                user_id=claim.user_id,
                provider_id=claim.provider_id,
                account_id=account_id,
                rows=rows,
                window_start=lo if complete else None,
                window_end=hi if complete else None,
                now=utcnow(),
            )
            tally.add(counts)
            tally.windows_done += 1
            await self._renew_in(session, claim, tally)

    # --- outcomes ---------------------------------------------------------------------------
    async def _succeed(self, claim: runs.Claim, tally: _Tally, started: datetime) -> SyncOutcome:
        now = self._now()
        settings = self.resources.settings
        next_at = next_scheduled_sync(
            now,
            interval_minutes=settings.sync_interval_minutes,
            jitter=settings.sync_interval_jitter,
            rand=self.rand,
        )
        async with session_scope(self.resources.session_factory) as session:
            finished = await runs.finish(
                session,
                claim,
                status=SyncStatus.SUCCEEDED,
                now=now,
                counts=tally.counts(),
                window=(tally.window_start, started),
            )
            if not finished:
                raise LeaseLost()
            await runs.set_provider_schedule(
                session,
                provider_id=claim.provider_id,
                now=now,
                next_sync_at=next_at,
                last_synced_at=started,
                clear_error=True,
            )
        log_event(
            logger,
            "sync.run.succeeded",
            run_id=str(claim.run_id),
            provider_id=str(claim.provider_id),
            accounts=tally.accounts,
            added=tally.added,
            modified=tally.modified,
            removed=tally.removed,
            windows=tally.windows_done,
        )
        elapsed = (now - started).total_seconds()
        metrics.sync_finished("succeeded", tally.added, tally.modified, tally.removed, elapsed)
        await self._report(
            SyncProgress(
                "done",
                tally.accounts,
                tally.accounts,
                tally.windows_done,
                tally.windows_done,
                tally.rows_fetched,
                tally.added,
                tally.modified,
                tally.removed,
            )
        )
        return SyncOutcome(
            claim.run_id,
            SyncStatus.SUCCEEDED,
            tally.accounts,
            tally.added,
            tally.modified,
            tally.removed,
        )

    async def _fail(
        self,
        claim: runs.Claim,
        tally: _Tally,
        failure: SyncFailure,
        exc: BaseException | None = None,
    ) -> SyncOutcome | None:
        now = self._now()
        settings = self.resources.settings
        retry_at: datetime | None = None
        async with session_scope(self.resources.session_factory) as session:
            if failure.retry:
                failures = await runs.consecutive_failures(session, provider_id=claim.provider_id)
                retry_at = whole_seconds(
                    now
                    + backoff_delay(
                        failures + 1,
                        base_seconds=settings.sync_retry_base_seconds,
                        cap_seconds=settings.sync_interval_minutes * 60,
                        rand=self.rand,
                    )
                )
            finished = await runs.finish(
                session,
                claim,
                status=SyncStatus.FAILED,
                now=now,
                counts=tally.counts(),
                error_code=failure.code,
                error_message=failure.message,
                window=(tally.window_start, None),
            )
            if not finished:
                return None
            await runs.set_provider_schedule(
                session,
                provider_id=claim.provider_id,
                now=now,
                next_sync_at=retry_at,
                # Reauth and disconnection already carry their own message on the provider.
                last_error=f"Last sync failed: {failure.message}" if failure.retry else None,
            )
        log_event(
            logger,
            "sync.run.failed",
            logging.ERROR if failure.code == "internal_error" else logging.WARNING,
            run_id=str(claim.run_id),
            provider_id=str(claim.provider_id),
            failure=failure.code,
            error_type=type(exc).__name__ if exc is not None else None,
            retry_at=retry_at.isoformat() if retry_at else None,
            added=tally.added,
            modified=tally.modified,
            removed=tally.removed,
        )
        metrics.sync_finished("failed", tally.added, tally.modified, tally.removed)
        return SyncOutcome(
            claim.run_id,
            SyncStatus.FAILED,
            tally.accounts,
            tally.added,
            tally.modified,
            tally.removed,
            failure.code,
            failure.message,
            retry_at,
        )

    # --- lease, lock, heartbeat -------------------------------------------------------------
    async def _renew_in(self, session: Any, claim: runs.Claim, tally: _Tally) -> None:
        """Renew the lease inside the unit of work that writes: no lease, no write."""
        if not await runs.renew(
            session, claim, now=self._now(), lease=self._lease, counts=tally.counts()
        ):
            raise LeaseLost()

    def _check_lease(self, claim: runs.Claim) -> None:
        if claim.run_id in self._lost:
            raise LeaseLost()

    async def _heartbeat(self, claim: runs.Claim, lock_token: str) -> None:
        interval = max(1.0, self._lease.total_seconds() / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                async with session_scope(self.resources.session_factory) as session:
                    alive = await runs.renew(session, claim, now=self._now(), lease=self._lease)
                await self._renew_lock(claim, lock_token)
            except Exception as exc:  # a missed beat is retried; the lease has slack
                log_event(
                    logger,
                    "sync.heartbeat.failed",
                    logging.WARNING,
                    run_id=str(claim.run_id),
                    error_type=type(exc).__name__,
                )
                continue
            if not alive:
                self._lost.add(claim.run_id)
                return

    def _lock_key(self, claim: runs.Claim) -> str:
        return f"sync-lock:{claim.provider_id}"

    async def _lock(self, claim: runs.Claim, token: str) -> bool:
        try:
            return await self.resources.kv.set_if_absent(
                self._lock_key(claim), token, ttl=self._lease.total_seconds()
            )
        except KeyValueUnavailable:
            # The database claim alone still guarantees one run per provider.
            log_event(logger, "sync.lock.degraded", logging.WARNING, run_id=str(claim.run_id))
            return True

    async def _renew_lock(self, claim: runs.Claim, token: str) -> None:
        kv = self.resources.kv
        with contextlib.suppress(KeyValueUnavailable):
            if (await kv.get(self._lock_key(claim))) == token.encode():
                await kv.set(self._lock_key(claim), token, ttl=self._lease.total_seconds())

    async def _unlock(self, claim: runs.Claim, token: str) -> None:
        kv = self.resources.kv
        with contextlib.suppress(KeyValueUnavailable):
            if (await kv.get(self._lock_key(claim))) == token.encode():
                await kv.delete(self._lock_key(claim))

    # --- reporting --------------------------------------------------------------------------
    async def _checkpoint(self, label: str) -> None:
        if self.checkpoint is not None:
            outcome = self.checkpoint(label)
            if outcome is not None:
                await outcome

    async def _report(self, progress: SyncProgress) -> None:
        if self.progress is None:
            return
        try:
            outcome = self.progress(progress)
            if outcome is not None:
                await outcome
        except Exception as exc:  # a broken progress display must not fail the sync
            log_event(logger, "sync.progress.failed", logging.WARNING, error=type(exc).__name__)

    @staticmethod
    def _snapshot(
        phase: Phase,
        tally: _Tally,
        index: int,
        count: int,
        walkers: Sequence[tuple[uuid.UUID, str, WindowWalker]],
    ) -> SyncProgress:
        remaining = sum(w.remaining_estimate() for _, _, w in walkers)
        return replace(
            SyncProgress(phase),
            account_index=index,
            account_count=count,
            windows_done=tally.windows_done,
            windows_estimate=tally.windows_done + remaining,
            rows_fetched=tally.rows_fetched,
            added=tally.added,
            modified=tally.modified,
            removed=tally.removed,
        )
