"""`POST /auth/register`, `POST /auth/verification-emails`, `POST /auth/verify-email`."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select

from dashtam.core.database import session_scope
from dashtam.core.state import AppResources
from dashtam.core.tokens import new_opaque_token
from dashtam.core.types import utcnow
from dashtam.models.auth import EmailVerificationToken
from dashtam.models.user import User
from dashtam.services.auth.toolkit import PURPOSE_VERIFICATION, AuthToolkit
from tests.api.auth.conftest import API, client_with, events, mail_to, problem_without_request_id
from tests.support.factories import KNOWN_PASSWORD, seed_user
from tests.support.mail import extract_token


def _email() -> str:
    return f"reg-{uuid.uuid4().hex[:10]}@example.com"


async def _user_by_email(resources: AppResources, email: str) -> User | None:
    async with session_scope(resources.session_factory) as session:
        stmt = select(User).where(User.email == email)
        return (await session.execute(stmt)).scalar_one_or_none()


async def _register(client: httpx.AsyncClient, email: str, **overrides: object) -> httpx.Response:
    body: dict[str, object] = {"email": email, "password": KNOWN_PASSWORD, "name": "Ann"}
    body.update(overrides)
    return await client.post(f"{API}/auth/register", json=body)


class TestRegister:
    async def test_new_email_creates_unverified_account_and_mails_a_token(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        address = _email()
        response = await _register(client, address.upper(), name="  Ann Example  ")

        assert response.status_code == 202
        assert set(response.json()) == {"message"}
        assert response.headers["RateLimit-Limit"] == "5"
        user = await _user_by_email(resources, address)
        assert user is not None
        assert user.name == "Ann Example"
        assert user.email_verified_at is None
        assert user.password_hash.startswith("$argon2id$")
        messages = mail_to(resources, address)
        assert len(messages) == 1
        assert len(extract_token(messages[0], "verification")) >= 40

    async def test_taken_email_gets_the_same_answer_and_the_owner_a_notice(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        owner = await seed_user(resources, name="Owner")
        fresh = await _register(client, _email())
        taken = await _register(client, f"  {owner.email.upper()} ")

        assert taken.status_code == fresh.status_code == 202
        assert taken.json() == fresh.json()
        notices = mail_to(resources, owner.email)
        assert len(notices) == 1
        assert "Verification token" not in str(notices[0].get_body(("plain",)).get_content())
        async with session_scope(resources.session_factory) as session:
            count = await session.scalar(
                select(func.count()).select_from(User).where(User.email == owner.email)
            )
        assert count == 1

    async def test_concurrent_registrations_of_one_email_make_one_account(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        address = _email()
        responses = await asyncio.gather(*(_register(client, address) for _ in range(3)))

        assert [r.status_code for r in responses] == [202, 202, 202]
        async with session_scope(resources.session_factory) as session:
            count = await session.scalar(
                select(func.count()).select_from(User).where(User.email == address)
            )
        assert count == 1

    async def test_weak_password_is_rejected_with_the_reason(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        address = _email()
        short = await _register(client, address, password="short")
        mine = await _register(client, address, password=f"{address.split('@')[0]}-plus-more")

        for response in (short, mine):
            assert response.status_code == 422
            assert response.json()["code"] == "weak_password"
        assert "12" in short.json()["detail"]
        assert await _user_by_email(resources, address) is None

    async def test_unknown_fields_are_rejected(self, client: httpx.AsyncClient) -> None:
        response = await _register(client, _email(), is_active=False)

        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
        assert response.json()["errors"][0]["loc"][-1] == "is_active"

    async def test_invalid_email_and_bad_names_are_422(self, client: httpx.AsyncClient) -> None:
        for overrides in (
            {"email": "not-an-email"},
            {"name": "   "},
            {"name": "x" * 101},
            {"name": "Ann\r\nBcc: evil@example.com"},
        ):
            body = {"email": _email(), "password": KNOWN_PASSWORD, "name": "Ann", **overrides}
            response = await client.post(f"{API}/auth/register", json=body)
            assert response.status_code == 422, overrides
            assert KNOWN_PASSWORD not in response.text

    async def test_is_throttled_per_ip(self, resources: AppResources, tmp_root: Path) -> None:
        async with client_with(resources, tmp_root, rate_limit_register="2/minute") as (http, _):
            first = await _register(http, "throttle-a@example.com", password="short")
            second = await _register(http, "throttle-b@example.com", password="short")
            third = await _register(http, _email())

        assert first.headers["RateLimit-Remaining"] == "1"
        assert second.headers["RateLimit-Remaining"] == "0"
        assert third.status_code == 429
        assert third.json()["code"] == "too_many_attempts"
        assert int(third.headers["Retry-After"]) >= 1
        assert third.headers["RateLimit-Limit"] == "2"
        assert third.headers["RateLimit-Remaining"] == "0"


class TestResendVerification:
    async def test_same_answer_for_unknown_verified_and_unverified_emails(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        unverified = await seed_user(resources, email_verified_at=None)
        verified = await seed_user(resources)
        answers = [
            await client.post(f"{API}/auth/verification-emails", json={"email": address})
            for address in (unverified.email, verified.email, _email())
        ]

        assert {r.status_code for r in answers} == {202}
        assert answers[0].json() == answers[1].json() == answers[2].json()
        assert len(mail_to(resources, unverified.email)) == 1
        assert mail_to(resources, verified.email) == []

    async def test_new_token_supersedes_the_previous_one(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        address = _email()
        await _register(client, address)
        first = extract_token(mail_to(resources, address)[-1], "verification")
        await client.post(f"{API}/auth/verification-emails", json={"email": address})
        second = extract_token(mail_to(resources, address)[-1], "verification")

        old = await client.post(f"{API}/auth/verify-email", json={"token": first})
        new = await client.post(f"{API}/auth/verify-email", json={"token": second})

        assert first != second
        assert old.status_code == 400
        assert new.status_code == 200

    async def test_unknown_fields_are_rejected(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            f"{API}/auth/verification-emails", json={"email": _email(), "name": "x"}
        )
        assert response.status_code == 422

    async def test_is_throttled_per_ip(self, resources: AppResources, tmp_root: Path) -> None:
        async with client_with(resources, tmp_root, rate_limit_resend="1/minute") as (http, _):
            await http.post(f"{API}/auth/verification-emails", json={"email": _email()})
            refused = await http.post(f"{API}/auth/verification-emails", json={"email": _email()})

        assert refused.status_code == 429
        assert refused.json()["code"] == "too_many_attempts"
        assert "Retry-After" in refused.headers


class TestVerifyEmail:
    async def test_token_verifies_once_and_then_login_works(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        address = _email()
        await _register(client, address)
        token = extract_token(mail_to(resources, address)[-1], "verification")
        before = await client.post(
            f"{API}/auth/login", json={"email": address, "password": KNOWN_PASSWORD}
        )

        verified = await client.post(f"{API}/auth/verify-email", json={"token": token})
        again = await client.post(f"{API}/auth/verify-email", json={"token": token})
        after = await client.post(
            f"{API}/auth/login", json={"email": address, "password": KNOWN_PASSWORD}
        )

        assert before.status_code == 403
        assert before.json()["code"] == "email_not_verified"
        assert verified.status_code == 200
        assert set(verified.json()) == {"message"}
        assert again.status_code == 400
        assert again.json()["code"] == "invalid_token"
        assert after.status_code == 200
        assert after.json()["user"]["email_verified"] is True
        user = await _user_by_email(resources, address)
        assert user is not None
        assert [e.user_id for e in await events(resources, "email_verified")] == [user.id]

    async def test_unknown_and_expired_tokens_are_400(
        self, client: httpx.AsyncClient, resources: AppResources, toolkit: AuthToolkit
    ) -> None:
        user = await seed_user(resources, email_verified_at=None)
        expired = new_opaque_token()
        async with session_scope(resources.session_factory) as session:
            session.add(
                EmailVerificationToken(
                    user_id=user.id,
                    token_hash=toolkit.keyed.digest(expired, purpose=PURPOSE_VERIFICATION),
                    created_at=utcnow() - timedelta(days=2),
                    expires_at=utcnow() - timedelta(seconds=1),
                )
            )

        unknown = await client.post(f"{API}/auth/verify-email", json={"token": "nope" * 10})
        late = await client.post(f"{API}/auth/verify-email", json={"token": expired})

        assert unknown.status_code == late.status_code == 400
        assert problem_without_request_id(unknown) == problem_without_request_id(late)
        assert (await _user_by_email(resources, user.email)).email_verified_at is None  # type: ignore[union-attr]

    async def test_unknown_fields_and_empty_token_are_422(self, client: httpx.AsyncClient) -> None:
        extra = await client.post(f"{API}/auth/verify-email", json={"token": "a" * 43, "x": 1})
        empty = await client.post(f"{API}/auth/verify-email", json={"token": ""})

        assert extra.status_code == empty.status_code == 422
