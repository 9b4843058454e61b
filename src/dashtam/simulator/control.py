"""The control API (`/control`): clock, tokens, faults, shape switches, stats, ground truth, reset.

It exists only on the simulator. When `SIMULATOR_CONTROL_TOKEN` is set, every call needs it in
the `X-Control-Token` header.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from dashtam.simulator.catalog import UserSpec
from dashtam.simulator.data import epoch, from_epoch
from dashtam.simulator.deps import StateDep, require_control
from dashtam.simulator.errors import SchwabError
from dashtam.simulator.schemas import (
    AccountSummary,
    ClockAdvance,
    ClockOut,
    FaultIn,
    FaultOut,
    FaultsCleared,
    OptionsIn,
    OptionsOut,
    RefreshModeIn,
    ResetOut,
    ScriptedEventOut,
    StatsOut,
    TokenActionIn,
    TokenActionOut,
    UserOut,
    UserSummary,
)
from dashtam.simulator.state import Fault, SimulatorState

router = APIRouter(prefix="/control", tags=["control"], dependencies=[Depends(require_control)])


def _clock(state: SimulatorState) -> ClockOut:
    return ClockOut(
        now=state.clock.now(), start=state.clock.start, offset_seconds=state.clock.offset_seconds
    )


def _user(state: SimulatorState, username: str) -> UserSpec:
    user = state.dataset.users.get(username)
    if user is None:
        raise SchwabError(404, {"detail": f"no simulator user {username!r}"})
    return user


def _options(state: SimulatorState) -> OptionsOut:
    return OptionsOut(**vars(state.options))


def _fault_out(fault: Fault) -> FaultOut:
    return FaultOut(
        id=fault.id,
        kind=fault.kind,
        remaining=fault.remaining,
        path_prefix=fault.path_prefix,
        status=fault.status,
        retry_after=fault.retry_after,
        latency_ms=fault.latency_ms,
        body=fault.body,
    )


@router.get("/clock")
async def get_clock(state: StateDep) -> ClockOut:
    """Read the simulator clock."""
    return _clock(state)


@router.post("/clock")
async def advance_clock(body: ClockAdvance, state: StateDep) -> ClockOut:
    """Advance the clock (tokens, codes and data follow it)."""
    state.clock.advance(body.advance_seconds)
    return _clock(state)


@router.get("/users")
async def users(state: StateDep) -> list[UserOut]:
    """List the test users and their account hashes."""
    return [
        UserOut(username=u.username, account_hashes=[a.hash for a in u.accounts])
        for u in state.dataset.users.values()
    ]


@router.post("/users/{username}/tokens")
async def token_action(username: str, body: TokenActionIn, state: StateDep) -> TokenActionOut:
    """Expire access tokens, revoke refresh tokens, or expire refresh tokens of a user."""
    _user(state, username)
    affected = state.tokens.apply(username, body.action, state.clock.now())
    return TokenActionOut(username=username, action=body.action, affected=affected)


@router.get("/users/{username}/summary")
async def summary(
    username: str,
    state: StateDep,
    as_of: Annotated[
        datetime | None, Query(description="ISO 8601 with offset; default now.")
    ] = None,
) -> UserSummary:
    """Ground truth per account: transaction count, exact netAmount sum, positions count."""
    user = _user(state, username)
    if as_of is not None and as_of.tzinfo is None:
        raise SchwabError(400, {"detail": "as_of needs a UTC offset, e.g. 2025-06-16T12:00:00Z"})
    moment = epoch(as_of) if as_of is not None else state.clock.now_epoch()
    dataset = state.dataset

    def compute() -> list[AccountSummary]:
        out = []
        for acct in user.accounts:
            totals = dataset.totals(acct, moment)
            out.append(
                AccountSummary(
                    account_hash=acct.hash,
                    account_number=acct.number,
                    type=acct.type,
                    transaction_count=totals.transaction_count,
                    pending_count=totals.pending_count,
                    net_amount_sum=Decimal(totals.net_cents).scaleb(-2),
                    positions_count=len(acct.holdings),
                    history_start=from_epoch(dataset.opened_at(acct)),
                )
            )
        return out

    # The whale's first summary generates 100k+ rows: do it off the event loop.
    accounts = await asyncio.to_thread(compute)
    return UserSummary(username=username, as_of=from_epoch(moment), accounts=accounts)


@router.get("/users/{username}/events")
async def scripted_events(username: str, state: StateDep) -> list[ScriptedEventOut]:
    """The hand-placed rows (pending → posted, cancelled, new) and when they change."""
    user = _user(state, username)
    return [
        ScriptedEventOut(**vars(event))
        for acct in user.accounts
        for event in state.dataset.scripted_events(acct)
    ]


@router.post("/faults", status_code=201)
async def add_fault(body: FaultIn, state: StateDep) -> FaultOut:
    """Inject a fault for the next `count` matching requests."""
    retry_after = body.retry_after
    if retry_after is None and body.kind == "status" and body.status == 429:
        retry_after = 1
    fault = state.faults.add(
        Fault(
            kind=body.kind,
            remaining=body.count,
            path_prefix=body.path_prefix,
            status=body.status,
            retry_after=retry_after,
            latency_ms=body.latency_ms,
            body=body.body,
        )
    )
    return _fault_out(fault)


@router.get("/faults")
async def list_faults(state: StateDep) -> list[FaultOut]:
    """The faults still waiting to fire."""
    return [_fault_out(f) for f in state.faults.faults]


@router.delete("/faults")
async def clear_faults(state: StateDep) -> FaultsCleared:
    """Remove every pending fault."""
    return FaultsCleared(cleared=state.faults.clear())


@router.put("/refresh-mode")
async def set_refresh_mode(body: RefreshModeIn, state: StateDep) -> OptionsOut:
    """Choose what a refresh returns: the `same` token, a `rotate`d one, or `omit` it."""
    state.options.refresh_mode = body.mode
    return _options(state)


@router.get("/options")
async def get_options(state: StateDep) -> OptionsOut:
    """Read the shape switches."""
    return _options(state)


@router.put("/options")
async def set_options(body: OptionsIn, state: StateDep) -> OptionsOut:
    """Change shape switches (refresh mode, single-transaction body, cancelled rows)."""
    for name, value in body.model_dump(exclude_none=True).items():
        setattr(state.options, name, value)
    return _options(state)


@router.get("/stats")
async def stats(state: StateDep) -> StatsOut:
    """Request counts per endpoint and token calls per grant type."""
    return StatsOut(
        requests=dict(state.stats.requests),
        token_grants=dict(state.stats.token_grants),
        faults_injected=state.faults.injected,
        rate_limited=state.stats.rate_limited,
    )


@router.post("/reset")
async def reset(state: StateDep) -> ResetOut:
    """Back to the initial state: clock, tokens, faults, stats, limits, switches."""
    state.reset()
    return ResetOut(now=state.clock.now())
