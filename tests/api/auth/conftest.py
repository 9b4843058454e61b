"""Helpers for the auth API tests: apps with other settings, the outbox, the event trail."""

from __future__ import annotations

import email.message
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dashtam.core.database import create_session_factory, session_scope
from dashtam.core.kv import KeyValueStore, KeyValueUnavailable
from dashtam.core.state import AppResources
from dashtam.main import create_app
from dashtam.models.auth import SecurityEvent
from dashtam.services.auth.toolkit import AuthToolkit
from tests.conftest import make_settings
from tests.support.factories import toolkit_for
from tests.support.mail import read_outbox

API = "/api/v1"


@pytest.fixture
def toolkit(resources: AppResources) -> AuthToolkit:
    """Auth collaborators sharing the app's secret and KV store."""
    return toolkit_for(resources.settings, resources.kv)


@asynccontextmanager
async def client_with(
    resources: AppResources,
    tmp_root: Path,
    *,
    kv: KeyValueStore | None = None,
    extras: dict[str, Any] | None = None,
    **overrides: object,
) -> AsyncIterator[tuple[httpx.AsyncClient, AppResources]]:
    """A client for an app over the same database but other settings (or KV store)."""
    settings = make_settings(tmp_root, **overrides).ensure_secrets()
    custom = AppResources(
        settings=settings,
        engine=resources.engine,
        session_factory=create_session_factory(resources.engine),
        kv=kv or resources.kv,
        extras=dict(extras or {}),
    )
    app = create_app(settings, resources=custom)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.10", 50000))
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="https://test") as http,
        ):
            yield http, custom
    finally:
        for closer in reversed(custom.closers):
            await closer()


def mail_to(resources: AppResources, address: str) -> list[email.message.EmailMessage]:
    """Messages in the test outbox addressed to `address`, oldest first."""
    assert resources.settings.mail_dir is not None
    return [m for m in read_outbox(resources.settings.mail_dir) if address in str(m["To"])]


async def events(resources: AppResources, event_type: str | None = None) -> list[SecurityEvent]:
    """Security events written so far (optionally of one type), oldest first."""
    async with session_scope(resources.session_factory) as session:
        stmt = select(SecurityEvent).order_by(SecurityEvent.created_at)  # type: ignore[arg-type]
        if event_type is not None:
            stmt = stmt.where(SecurityEvent.event_type == event_type)
        return list((await session.execute(stmt)).scalars().all())


def problem_without_request_id(response: httpx.Response) -> dict[str, Any]:
    """The problem body minus the per-request id (for "same answer" comparisons)."""
    body = dict(response.json())
    body.pop("request_id", None)
    return body


def bearer(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}


class UnreachableKeyValueStore:
    """A KV store whose server is down: every call raises `KeyValueUnavailable`."""

    backend = "redis"

    async def _down(self, *_args: object, **_kwargs: object) -> Any:
        raise KeyValueUnavailable("connection refused")

    get = set = set_if_absent = pop = incr = ttl = delete = ping = _down

    def lock(self, name: str, *, timeout: float, blocking_timeout: float | None = None) -> Any:
        raise KeyValueUnavailable("connection refused")

    async def close(self) -> None:
        return None
