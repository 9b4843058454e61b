"""Dependencies of the simulator's routes: its state, the bearer-token owner, the control guard."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from dashtam.simulator.catalog import UserSpec
from dashtam.simulator.errors import SchwabError, gateway_error, unauthorized
from dashtam.simulator.state import SimulatorState


async def get_state(request: Request) -> SimulatorState:
    """The simulator state of this app."""
    state: SimulatorState = request.app.state.simulator
    return state


StateDep = Annotated[SimulatorState, Depends(get_state)]


@dataclass(frozen=True)
class Caller:
    """Who a Trader API call is made for."""

    user: UserSpec
    client_id: str


async def get_caller(request: Request, state: StateDep) -> Caller:
    """Authenticate the bearer token and apply the per-owner rate limit.

    Raises:
        SchwabError: 401 (gateway body) for a missing/unknown/expired token; 429 above the limit.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized()
    grant = state.tokens.authenticate(token.strip(), state.clock.now())
    if grant is None:
        raise unauthorized()
    wait = state.limiter.hit(f"{grant.username}:{grant.client_id}")
    if wait is not None:
        state.stats.rate_limited += 1
        raise gateway_error(
            429,
            "Too Many Requests",
            f"Rate limit exceeded: {state.limiter.limit} requests per minute",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    return Caller(state.dataset.users[grant.username], grant.client_id)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def require_control(request: Request, state: StateDep) -> None:
    """Guard `/control` with `SIMULATOR_CONTROL_TOKEN` (via `X-Control-Token`) when it is set."""
    expected = state.control_token
    if expected is None:
        return
    given = request.headers.get("x-control-token", "")
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise SchwabError(
            401,
            {"detail": "X-Control-Token is missing or wrong"},
        )
