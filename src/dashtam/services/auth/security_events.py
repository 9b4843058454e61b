"""The security event trail: stable event names and one way to append them.

Events are written in the same unit of work as the change they describe, so the trail never
claims something that was rolled back. `details` must never hold a secret (password, token).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.logging import log_event
from dashtam.services.auth import repository
from dashtam.services.auth.toolkit import ClientInfo

logger = logging.getLogger("dashtam.auth")


class SecurityEventType(StrEnum):
    """Every event type written to `security_events`."""

    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    LOGIN_LOCKED = "login_locked"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"  # noqa: S105 (an event name, not a secret)
    SESSION_REVOKED = "session_revoked"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 (an event name, not a secret)
    PASSWORD_CHANGE_FAILED = "password_change_failed"  # noqa: S105 (an event name, not a secret)
    PASSWORD_RESET = "password_reset"  # noqa: S105 (an event name, not a secret)
    EMAIL_VERIFIED = "email_verified"


def record_event(
    session: AsyncSession,
    event_type: SecurityEventType,
    *,
    user_id: uuid.UUID | None,
    client: ClientInfo,
    now: datetime,
    **details: Any,
) -> None:
    """Append an event to the unit of work and mirror it to the structured log.

    Args:
        session: The unit of work the event belongs to.
        event_type: What happened.
        user_id: Whose account (None for unknown emails).
        client: Where the request came from.
        now: The event time.
        **details: Extra JSON-serialisable facts (ids, reasons); never secrets.
    """
    repository.add_security_event(
        session,
        event_type=event_type.value,
        user_id=user_id,
        now=now,
        ip_address=client.ip_address,
        user_agent=client.user_agent,
        request_id=client.request_id,
        details=details,
    )
    log_event(
        logger,
        f"auth.security.{event_type.value}",
        logging.WARNING if event_type is SecurityEventType.REFRESH_TOKEN_REUSED else logging.INFO,
        user_id=str(user_id) if user_id else None,
        client_ip=client.ip_address,
        **details,
    )
