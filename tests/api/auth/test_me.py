"""`GET/PATCH /auth/me`, `PATCH /auth/me/password`, and the bearer-token checks behind them."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import jwt

from dashtam.core.database import session_scope
from dashtam.core.state import AppResources
from dashtam.core.types import utcnow
from dashtam.models.user import User
from dashtam.services.auth.toolkit import AuthToolkit
from tests.api.auth.conftest import API, bearer, client_with, events, mail_to
from tests.support.factories import (
    KNOWN_PASSWORD,
    NEW_PASSWORD,
    seed_login,
    seed_reset_token,
    seed_user,
)


class TestReadMe:
    async def test_returns_the_account_without_secrets(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        login = await seed_login(resources)
        response = await client.get(f"{API}/auth/me", headers=login.headers)

        assert response.status_code == 200
        assert response.json() == {
            "id": str(login.user.id),
            "email": login.user.email,
            "name": login.user.name,
            "email_verified": True,
            "is_active": True,
            "created_at": response.json()["created_at"],
            "last_login_at": None,
        }
        assert response.headers["RateLimit-Limit"] == "600"
        assert response.headers["Cache-Control"] == "no-store"

    async def test_forged_expired_and_foreign_tokens_are_rejected(
        self, client: httpx.AsyncClient, resources: AppResources, toolkit: AuthToolkit
    ) -> None:
        login = await seed_login(resources)
        expired, _ = toolkit.codec.encode(
            user_id=login.user.id,
            session_id=login.tokens.session_id,
            now=utcnow() - timedelta(hours=1),
        )
        claims = jwt.decode(login.tokens.access_token, options={"verify_signature": False})
        forged = jwt.encode(claims, "guessed-secret-" * 3, algorithm="HS256")
        unsigned = jwt.encode(claims, None, algorithm="none")
        wrong_user, _ = toolkit.codec.encode(
            user_id=uuid.uuid4(), session_id=login.tokens.session_id
        )

        for token in (expired, forged, unsigned, wrong_user, login.tokens.refresh_token):
            response = await client.get(f"{API}/auth/me", headers=bearer(token))
            assert response.status_code == 401, token
            assert response.json()["code"] == "invalid_token"
            assert response.headers["WWW-Authenticate"] == "Bearer"

    async def test_disabled_account_loses_access(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        login = await seed_login(resources)
        async with session_scope(resources.session_factory) as session:
            user = await session.get(User, login.user.id)
            assert user is not None
            user.is_active = False

        response = await client.get(f"{API}/auth/me", headers=login.headers)
        assert response.status_code == 401

    async def test_per_user_rate_limit_answers_429_with_headers(
        self, resources: AppResources, tmp_root: Path
    ) -> None:
        login = await seed_login(resources)
        async with client_with(resources, tmp_root, rate_limit_user="2/minute") as (http, _):
            ok = [await http.get(f"{API}/auth/me", headers=login.headers) for _ in range(2)]
            refused = await http.get(f"{API}/auth/me", headers=login.headers)

        assert [r.status_code for r in ok] == [200, 200]
        assert ok[1].headers["RateLimit-Remaining"] == "0"
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["RateLimit-Limit"] == "2"


class TestUpdateMe:
    async def test_renames_with_trimming(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        login = await seed_login(resources)
        response = await client.patch(
            f"{API}/auth/me", headers=login.headers, json={"name": "  New Name "}
        )

        assert response.status_code == 200
        assert response.json()["name"] == "New Name"
        again = await client.get(f"{API}/auth/me", headers=login.headers)
        assert again.json()["name"] == "New Name"

    async def test_cannot_mass_assign_other_fields(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        login = await seed_login(resources)
        for body in (
            {"name": "Ok", "email": "takeover@example.com"},
            {"name": "Ok", "is_active": True},
            {"email_verified": True},
        ):
            response = await client.patch(f"{API}/auth/me", headers=login.headers, json=body)
            assert response.status_code == 422, body
        me = await client.get(f"{API}/auth/me", headers=login.headers)
        assert me.json()["email"] == login.user.email

    async def test_requires_authentication(self, client: httpx.AsyncClient) -> None:
        response = await client.patch(f"{API}/auth/me", json={"name": "x"})
        assert response.status_code == 401


class TestChangePassword:
    async def test_changes_password_and_revokes_every_other_session(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        user = await seed_user(resources)
        current = await seed_login(resources, user)
        other = await seed_login(resources, user)
        reset_token = await seed_reset_token(resources, user)

        response = await client.patch(
            f"{API}/auth/me/password",
            headers=current.headers,
            json={"current_password": KNOWN_PASSWORD, "new_password": NEW_PASSWORD},
        )

        assert response.status_code == 204
        assert (await client.get(f"{API}/auth/me", headers=current.headers)).status_code == 200
        assert (await client.get(f"{API}/auth/me", headers=other.headers)).status_code == 401
        refresh = await client.post(
            f"{API}/auth/refresh", json={"refresh_token": other.tokens.refresh_token}
        )
        assert refresh.status_code == 401
        assert (await client.get(f"{API}/password-resets/{reset_token}")).status_code == 404
        old = await client.post(
            f"{API}/auth/login", json={"email": user.email, "password": KNOWN_PASSWORD}
        )
        new = await client.post(
            f"{API}/auth/login", json={"email": user.email, "password": NEW_PASSWORD}
        )
        assert old.status_code == 401
        assert new.status_code == 200
        assert len(mail_to(resources, user.email)) == 1
        assert [e.user_id for e in await events(resources, "password_changed")] == [user.id]

    async def test_wrong_current_password_is_400_invalid_password(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        login = await seed_login(resources)
        response = await client.patch(
            f"{API}/auth/me/password",
            headers=login.headers,
            json={"current_password": "not-the-password-1", "new_password": NEW_PASSWORD},
        )

        assert response.status_code == 400
        assert response.json()["code"] == "invalid_password"
        failed = await events(resources, "password_change_failed")
        assert [e.user_id for e in failed] == [login.user.id]

    async def test_weak_new_password_is_422_and_changes_nothing(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        login = await seed_login(resources)
        response = await client.patch(
            f"{API}/auth/me/password",
            headers=login.headers,
            json={"current_password": KNOWN_PASSWORD, "new_password": "password1234"},
        )
        login_again = await client.post(
            f"{API}/auth/login", json={"email": login.user.email, "password": KNOWN_PASSWORD}
        )

        assert response.status_code == 422
        assert response.json()["code"] == "weak_password"
        assert login_again.status_code == 200

    async def test_unknown_fields_are_422(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        login = await seed_login(resources)
        response = await client.patch(
            f"{API}/auth/me/password",
            headers=login.headers,
            json={
                "current_password": KNOWN_PASSWORD,
                "new_password": NEW_PASSWORD,
                "user_id": str(uuid.uuid4()),
            },
        )
        assert response.status_code == 422
        assert KNOWN_PASSWORD not in response.text
