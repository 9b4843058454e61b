"""The provider audit trail: one append-only row per operation, never a secret.

Successful operations are recorded in the same unit of work as the change they describe (both
or neither commit). Failures are recorded in a unit of work of their own, because the failing
request's unit of work rolls back.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.database import session_scope
from dashtam.core.logging import log_event
from dashtam.core.request_context import current_request_id
from dashtam.core.state import AppResources
from dashtam.core.types import utcnow
from dashtam.models.provider import ProviderAuditLog

logger = logging.getLogger("dashtam.connections.audit")

#: Detail keys that must never be written, whatever a caller passes (defence in depth).
_FORBIDDEN_DETAIL = re.compile(
    r"(token|secret|password|code|state|verifier|key|authorization|cookie)", re.IGNORECASE
)
#: Detail keys that look forbidden by the pattern above but carry no secret.
_ALLOWED_DETAIL = frozenset(
    {"provider_key", "refresh_count", "error_code", "rotation_outcome", "key_id"}
)
_MAX_DETAIL_TEXT = 200


class AuditAction(StrEnum):
    """What happened to a provider."""

    CREATED = "provider.created"
    RENAMED = "provider.renamed"
    DELETED = "provider.deleted"
    AUTHORIZATION_STARTED = "authorization.started"
    CALLBACK = "authorization.callback"
    DISCONNECTED = "authorization.disconnected"
    TOKEN_REFRESHED = "token.refreshed"  # noqa: S105
    TOKEN_ROTATED = "token.rotated"  # noqa: S105
    TOKEN_REFRESH_FAILED = "token.refresh_failed"  # noqa: S105
    REAUTH_REQUIRED = "authorization.reauth_required"


class AuditOutcome(StrEnum):
    """Whether the operation worked."""

    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True)
class AuditOrigin:
    """Who asked and from where: the request's client IP and id (None for background work)."""

    ip_address: str | None = None
    request_id: str | None = field(default_factory=current_request_id)


def safe_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keep only details that cannot be secrets: short scalars under harmless keys."""
    cleaned: dict[str, Any] = {}
    for key, value in (details or {}).items():
        if key not in _ALLOWED_DETAIL and _FORBIDDEN_DETAIL.search(key):
            continue
        if isinstance(value, str):
            cleaned[key] = value[:_MAX_DETAIL_TEXT]
        elif value is None or isinstance(value, bool | int | float):
            cleaned[key] = value
        else:
            cleaned[key] = str(value)[:_MAX_DETAIL_TEXT]
    return cleaned


def audit_values(
    *,
    provider_id: uuid.UUID,
    user_id: uuid.UUID,
    action: AuditAction,
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    origin: AuditOrigin | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One audit row as column values (details made safe), for a Core `INSERT`.

    Call `log_recorded` once the row is written (`record` does both).
    """
    origin = origin or AuditOrigin()
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "provider_id": provider_id,
        "user_id": user_id,
        "action": action.value,
        "outcome": outcome.value,
        "details": safe_details(details),
        "ip_address": origin.ip_address,
        "request_id": origin.request_id,
        "created_at": utcnow(),
    }
    return values


def record(
    session: AsyncSession,
    *,
    provider_id: uuid.UUID,
    user_id: uuid.UUID,
    action: AuditAction,
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    origin: AuditOrigin | None = None,
    details: Mapping[str, Any] | None = None,
) -> ProviderAuditLog:
    """Add an audit row to the current unit of work (it commits with the change)."""
    values = audit_values(
        provider_id=provider_id,
        user_id=user_id,
        action=action,
        outcome=outcome,
        origin=origin,
        details=details,
    )
    row = ProviderAuditLog(**values)
    session.add(row)
    log_recorded(values)
    return row


def log_recorded(values: Mapping[str, Any]) -> None:
    """Log an audit row (made by `audit_values`) as the structured event `record` logs."""
    success = values["outcome"] == AuditOutcome.SUCCESS.value
    log_event(
        logger,
        f"provider.audit.{values['action']}",
        logging.INFO if success else logging.WARNING,
        provider_id=str(values["provider_id"]),
        outcome=values["outcome"],
        **{f"detail_{k}": v for k, v in values["details"].items()},
    )


async def record_detached(
    resources: AppResources,
    *,
    provider_id: uuid.UUID,
    user_id: uuid.UUID,
    action: AuditAction,
    outcome: AuditOutcome,
    origin: AuditOrigin | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record an audit row in a unit of work of its own (failures whose request rolls back).

    A failure to write the audit row is logged, never raised: it must not mask the error
    the caller is about to report.
    """
    try:
        async with session_scope(resources.session_factory) as session:
            record(
                session,
                provider_id=provider_id,
                user_id=user_id,
                action=action,
                outcome=outcome,
                origin=origin,
                details=details,
            )
    except Exception as exc:  # noqa: BLE001 - see docstring
        log_event(
            logger,
            "provider.audit.write_failed",
            logging.ERROR,
            provider_id=str(provider_id),
            action=action.value,
            error_type=type(exc).__name__,
        )
