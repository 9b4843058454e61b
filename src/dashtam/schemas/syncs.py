"""Request/response models of the sync endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dashtam.models.financial import SyncRun

SyncStatusName = Literal["queued", "running", "succeeded", "failed"]
SyncTriggerName = Literal["manual", "scheduled", "connect"]


class SyncAccepted(BaseModel):
    """A sync was queued (or one was already queued or running: that one)."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "0b6c1f9e-3d7a-4f61-9a0e-2a7d0c8b5e11",
                "status": "queued",
                "trigger": "manual",
            }
        }
    )

    id: uuid.UUID
    status: SyncStatusName
    trigger: SyncTriggerName


class SyncError(BaseModel):
    """Why a run failed: a stable `code` and a message safe to show."""

    code: str = Field(examples=["reauth_required", "provider_unavailable"])
    message: str


class SyncRunOut(BaseModel):
    """One sync run. Counts grow while it runs; `error` is set when it failed."""

    id: uuid.UUID
    provider_id: uuid.UUID
    status: SyncStatusName
    trigger: SyncTriggerName
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    accounts: int = Field(description="Accounts synced.")
    added: int = Field(description="Transactions new to Dashtam.")
    modified: int = Field(description="Transactions whose content changed (pending → posted…).")
    removed: int = Field(description="Transactions the institution no longer lists.")
    window_start: datetime | None = Field(
        description="Oldest transaction date this run fetched from."
    )
    window_end: datetime | None = Field(description="Newest instant this run covered.")
    attempt: int = Field(description="How many times a worker took this run (re-queued runs).")
    error: SyncError | None

    @classmethod
    def of(cls, run: SyncRun) -> SyncRunOut:
        """Build from the table row."""
        error = (
            SyncError(code=run.error_code, message=run.error_message or run.error_code)
            if run.error_code
            else None
        )
        return cls(
            id=run.id,
            provider_id=run.provider_id,
            status=run.status,
            trigger=run.trigger,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            accounts=run.accounts,
            added=run.added,
            modified=run.modified,
            removed=run.removed,
            window_start=run.window_start,
            window_end=run.window_end,
            attempt=run.attempt,
            error=error,
        )


class SyncRunPage(BaseModel):
    """A page of a provider's runs, newest first."""

    items: list[SyncRunOut]
    next_cursor: str | None
    has_more: bool
