"""Emails are handed over only after the unit of work commits, and dropped on rollback."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from dashtam.core.database import session_scope
from dashtam.core.state import AppResources
from dashtam.models.user import User
from dashtam.services.auth.registration import register
from dashtam.services.auth.toolkit import Mailer
from tests.support.factories import KNOWN_PASSWORD, toolkit_for


class _Recorder:
    """Captures what would be sent; `defer` stands in for `BackgroundTasks.add_task`."""

    def __init__(self) -> None:
        self.deferred: list[tuple[Any, ...]] = []
        self.sent: list[tuple[str, str, dict[str, object]]] = []

    def defer(self, func: Any, *args: Any) -> None:
        self.deferred.append((func, *args))

    async def send_template(self, to: str, template: str, **context: object) -> None:
        self.sent.append((to, template, context))


class _Boom(Exception):
    pass


class TestMailAfterCommit:
    async def test_nothing_is_queued_until_the_commit(self, resources: AppResources) -> None:
        recorder = _Recorder()
        mailer = Mailer(email=recorder, defer=recorder.defer)
        toolkit = toolkit_for(resources.settings, resources.kv)
        address = f"after-commit-{uuid.uuid4().hex[:8]}@example.com"

        async with session_scope(resources.session_factory) as session:
            await register(
                session, toolkit, mailer, email=address, password=KNOWN_PASSWORD, name="A"
            )
            assert recorder.deferred == []  # still inside the transaction

        assert len(recorder.deferred) == 1
        func, *args = recorder.deferred[0]
        await func(*args)
        [(to, template, context)] = recorder.sent
        assert (to, template) == (address, "verification")
        assert isinstance(context["token"], str)

    async def test_a_rolled_back_registration_sends_nothing(self, resources: AppResources) -> None:
        recorder = _Recorder()
        mailer = Mailer(email=recorder, defer=recorder.defer)
        toolkit = toolkit_for(resources.settings, resources.kv)
        address = f"rolled-back-{uuid.uuid4().hex[:8]}@example.com"

        async def register_then_fail() -> None:
            async with session_scope(resources.session_factory) as session:
                await register(
                    session, toolkit, mailer, email=address, password=KNOWN_PASSWORD, name="A"
                )
                raise _Boom

        with pytest.raises(_Boom):
            await register_then_fail()

        assert recorder.deferred == []
        async with session_scope(resources.session_factory) as session:
            found = await session.scalar(select(User.id).where(User.email == address))
        assert found is None
