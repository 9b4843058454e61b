"""Per-request context (request id, user id, provider id) carried in context variables.

Log records and problem bodies read it, so neither needs the request object passed around.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_user_id: ContextVar[str | None] = ContextVar("user_id", default=None)
_provider_id: ContextVar[str | None] = ContextVar("provider_id", default=None)
#: A background job's identity (`job`, `job_id`, `run_id`): logged alongside the ids above.
_job: ContextVar[Mapping[str, str] | None] = ContextVar("job", default=None)


def current_request_id() -> str | None:
    """The id of the request being served, if any."""
    return _request_id.get()


def set_request_id(value: str | None) -> None:
    """Bind the request id for the current task."""
    _request_id.set(value)


def current_user_id() -> str | None:
    """The authenticated user's id for the current request, if known."""
    return _user_id.get()


def set_user_id(value: str | None) -> None:
    """Bind the authenticated user id for the current task (used in logs)."""
    _user_id.set(value)


def current_provider_id() -> str | None:
    """The provider (connection) id being worked on, if known."""
    return _provider_id.get()


def set_provider_id(value: str | None) -> None:
    """Bind the provider id for the current task (used in logs)."""
    _provider_id.set(value)


def current_job() -> Mapping[str, str] | None:
    """The background job being run (`job`, `job_id`, `run_id`), if any."""
    return _job.get()


def set_job(value: Mapping[str, str] | None) -> None:
    """Bind a background job's identity for the current task (used in logs)."""
    _job.set(value)
