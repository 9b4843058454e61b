"""Email never fails a request, and is sent only for committed work."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from dashtam.core.database import session_scope
from dashtam.core.state import AppResources
from dashtam.models.auth import EmailVerificationToken
from dashtam.models.user import User
from dashtam.services.email import EmailMessage, EmailService
from tests.api.auth.conftest import API, client_with
from tests.support.factories import KNOWN_PASSWORD


class _ExplodingSender:
    """Breaks the service's promise not to raise: the request must survive even that."""

    def __init__(self) -> None:
        self.calls = 0

    async def send_template(self, to: str, template: str, **context: object) -> None:
        self.calls += 1
        raise ConnectionError("mail relay is down")


class _BrokenBackend:
    name = "broken"

    async def send(self, message: EmailMessage) -> None:
        raise TimeoutError("SMTP timed out")


async def _registered(resources: AppResources, email: str) -> tuple[User | None, int]:
    async with session_scope(resources.session_factory) as session:
        user = (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()
        tokens = (
            (await session.execute(select(EmailVerificationToken))).scalars().all() if user else []
        )
        return user, len([t for t in tokens if user and t.user_id == user.id])


class TestMailFailure:
    async def test_a_raising_sender_does_not_fail_or_roll_back_registration(
        self, resources: AppResources, tmp_root: Path
    ) -> None:
        sender = _ExplodingSender()
        async with client_with(resources, tmp_root, extras={"email": sender}) as (http, _):
            response = await http.post(
                f"{API}/auth/register",
                json={"email": "relay-down@example.com", "password": KNOWN_PASSWORD, "name": "A"},
            )

        assert response.status_code == 202
        assert sender.calls == 1
        user, tokens = await _registered(resources, "relay-down@example.com")
        assert user is not None
        assert tokens == 1

    async def test_a_failing_backend_does_not_fail_a_password_reset_request(
        self, resources: AppResources, tmp_root: Path
    ) -> None:
        service = EmailService(_BrokenBackend(), link_base_url="https://x", app_name="Dashtam")
        async with client_with(resources, tmp_root, extras={"email": service}) as (http, _):
            response = await http.post(
                f"{API}/auth/register",
                json={"email": "smtp-down@example.com", "password": KNOWN_PASSWORD, "name": "A"},
            )
            reset = await http.post(
                f"{API}/password-resets", json={"email": "smtp-down@example.com"}
            )

        assert response.status_code == 202
        assert reset.status_code == 202
