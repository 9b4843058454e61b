"""Request and response models of the simulator's control API (`/control`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from dashtam.simulator.state import FaultKind, RefreshMode, TokenAction


class ClockOut(BaseModel):
    """The simulator clock."""

    now: datetime
    start: datetime
    offset_seconds: float


class ClockAdvance(BaseModel):
    """Move the clock forward."""

    advance_seconds: float = Field(gt=0, le=20 * 366 * 86_400, description="Seconds to add.")


class TokenActionIn(BaseModel):
    """What to do to a user's tokens."""

    action: TokenAction


class TokenActionOut(BaseModel):
    """How many tokens an action touched."""

    username: str
    action: TokenAction
    affected: int


class FaultIn(BaseModel):
    """A fault for the next `count` requests matching `path_prefix` (all non-control paths)."""

    kind: FaultKind = Field(
        description="`status`: answer with `status`; `latency`: wait `latency_ms` then serve; "
        "`malformed`: 200 with a broken JSON body; `drop`: close the connection, no response."
    )
    count: int = Field(default=1, ge=1, le=10_000)
    path_prefix: str | None = Field(default=None, examples=["/v1/oauth/token", "/trader/v1"])
    status: int = Field(default=500, ge=400, le=599)
    retry_after: int | None = Field(
        default=None, ge=0, le=3600, description="Retry-After seconds (default 1 for 429)."
    )
    latency_ms: int = Field(default=0, ge=0, le=120_000)
    body: Literal["json", "empty", "html"] = Field(
        default="json", description="Error body style for `status` faults."
    )

    @model_validator(mode="after")
    def _latency_needs_time(self) -> FaultIn:
        if self.kind == "latency" and self.latency_ms == 0:
            raise ValueError("a latency fault needs latency_ms > 0")
        return self


class FaultOut(BaseModel):
    """A queued fault."""

    id: str
    kind: FaultKind
    remaining: int
    path_prefix: str | None
    status: int
    retry_after: int | None
    latency_ms: int
    body: Literal["json", "empty", "html"]


class FaultsCleared(BaseModel):
    """Result of clearing faults."""

    cleared: int


class RefreshModeIn(BaseModel):
    """What the refresh grant returns as `refresh_token`."""

    mode: RefreshMode


class OptionsIn(BaseModel):
    """Switch response shapes (omitted fields stay as they are)."""

    refresh_mode: RefreshMode | None = None
    transaction_detail_shape: Literal["array", "object"] | None = None
    cancelled_transactions: Literal["hide", "invalid"] | None = None


class OptionsOut(BaseModel):
    """The current shape switches."""

    refresh_mode: RefreshMode
    transaction_detail_shape: Literal["array", "object"]
    cancelled_transactions: Literal["hide", "invalid"]


class StatsOut(BaseModel):
    """Request counts since start or the last reset."""

    requests: dict[str, int] = Field(description="Per `METHOD /route/template`.")
    token_grants: dict[str, int] = Field(description="Token endpoint calls per grant_type.")
    faults_injected: int
    rate_limited: int


class AccountSummary(BaseModel):
    """Ground truth for one account at `as_of` (cancelled rows excluded, pending included)."""

    account_hash: str
    account_number: str
    type: str
    transaction_count: int
    pending_count: int
    net_amount_sum: Decimal = Field(description="Sum of netAmount, exact, in USD.")
    currency: Literal["USD"] = "USD"
    positions_count: int
    history_start: datetime


class UserSummary(BaseModel):
    """Ground truth for a user's accounts."""

    username: str
    as_of: datetime
    accounts: list[AccountSummary]


class ScriptedEventOut(BaseModel):
    """A hand-placed transaction whose evolution is known in advance."""

    name: str
    account_hash: str
    activity_id: int
    appears_at: datetime
    posts_at: datetime | None
    cancelled_at: datetime | None


class UserOut(BaseModel):
    """A test user and the hashes of its accounts."""

    username: str
    account_hashes: list[str]


class ResetOut(BaseModel):
    """Result of a reset."""

    status: Literal["reset"] = "reset"
    now: datetime
