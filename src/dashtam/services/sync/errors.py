"""Errors of the sync domain, each with its stable problem `code`."""

from __future__ import annotations

from typing import Any

from dashtam.core.errors import Conflict, NotFound


class SyncRunNotFound(NotFound):
    """404: no such sync run, or not the caller's."""

    code = "sync_not_found"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail or "No such sync run.", **kwargs)


class SyncNotAllowed(Conflict):
    """409: the provider cannot sync in its current state.

    Codes: `reauth_required` (sign in at the institution again), `provider_not_connected`
    (never authorized, or disconnected), `provider_in_error` (see the provider's `last_error`).
    """

    code = "provider_not_connected"
