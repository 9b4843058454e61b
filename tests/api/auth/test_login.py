"""`POST /auth/login`: success, no enumeration, lockout, throttling, hash upgrade, degraded KV."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select

from dashtam.core.database import session_scope
from dashtam.core.state import AppResources
from dashtam.core.types import utcnow
from dashtam.models.user import User
from tests.api.auth.conftest import (
    API,
    UnreachableKeyValueStore,
    bearer,
    client_with,
    events,
    problem_without_request_id,
)
from tests.support.factories import KNOWN_PASSWORD, KNOWN_PASSWORD_BCRYPT, seed_user


async def _login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(f"{API}/auth/login", json={"email": email, "password": password})


async def _reload(resources: AppResources, user_id: uuid.UUID) -> User:
    async with session_scope(resources.session_factory) as session:
        user = await session.get(User, user_id)
        assert user is not None
        return user


class TestLogin:
    async def test_right_password_returns_tokens_and_the_account(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        user = await seed_user(resources, name="Ann")
        response = await _login(client, f" {user.email.upper()} ", KNOWN_PASSWORD)

        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "bearer"
        assert 1700 <= body["expires_in"] <= 1800
        assert 30 * 86400 - 60 <= body["refresh_expires_in"] <= 30 * 86400
        assert body["user"]["id"] == str(user.id)
        assert body["user"]["email"] == user.email
        assert "password_hash" not in response.text
        assert response.headers["RateLimit-Limit"] == "10"
        me = await client.get(f"{API}/auth/me", headers=bearer(body["access_token"]))
        assert me.status_code == 200
        stored = await _reload(resources, user.id)
        assert stored.last_login_at is not None
        assert stored.last_login_ip == "203.0.113.10"
        [event] = await events(resources, "login_succeeded")
        assert event.user_id == user.id
        assert event.ip_address == "203.0.113.10"
        assert KNOWN_PASSWORD not in str(event.details)

    async def test_unknown_email_and_wrong_password_get_the_same_answer(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        user = await seed_user(resources)
        wrong = await _login(client, user.email, "not-the-password-123")
        unknown = await _login(client, "nobody-here@example.com", KNOWN_PASSWORD)

        assert wrong.status_code == unknown.status_code == 401
        assert problem_without_request_id(wrong) == problem_without_request_id(unknown)
        assert wrong.json()["code"] == "invalid_credentials"
        assert wrong.headers["WWW-Authenticate"] == unknown.headers["WWW-Authenticate"] == "Bearer"
        failed = await events(resources, "login_failed")
        assert [e.user_id for e in failed] == [user.id, None]

    async def test_unverified_email_is_403_only_after_the_right_password(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        user = await seed_user(resources, email_verified_at=None)
        wrong = await _login(client, user.email, "not-the-password-123")
        right = await _login(client, user.email, KNOWN_PASSWORD)

        assert wrong.status_code == 401
        assert right.status_code == 403
        assert right.json()["code"] == "email_not_verified"

    async def test_disabled_account_is_403_only_after_the_right_password(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        user = await seed_user(resources, is_active=False)
        wrong = await _login(client, user.email, "not-the-password-123")
        right = await _login(client, user.email, KNOWN_PASSWORD)

        assert wrong.status_code == 401
        assert right.status_code == 403
        assert right.json()["code"] == "account_disabled"

    async def test_bcrypt_hash_is_upgraded_to_argon2id(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        user = await seed_user(resources, password_hash=KNOWN_PASSWORD_BCRYPT)
        first = await _login(client, user.email, KNOWN_PASSWORD)
        upgraded = await _reload(resources, user.id)
        second = await _login(client, user.email, KNOWN_PASSWORD)

        assert first.status_code == second.status_code == 200
        assert upgraded.password_hash.startswith("$argon2id$")
        assert (await _reload(resources, user.id)).password_hash == upgraded.password_hash

    async def test_unknown_fields_and_bad_email_are_422(self, client: httpx.AsyncClient) -> None:
        extra = await client.post(
            f"{API}/auth/login",
            json={"email": "a@example.com", "password": KNOWN_PASSWORD, "remember": True},
        )
        bad = await _login(client, "not-an-email", KNOWN_PASSWORD)

        assert extra.status_code == bad.status_code == 422
        assert KNOWN_PASSWORD not in extra.text

    async def test_is_throttled_per_ip(self, resources: AppResources, tmp_root: Path) -> None:
        user = await seed_user(resources)
        async with client_with(resources, tmp_root, rate_limit_login="2/minute") as (http, _):
            await _login(http, "nobody-1@example.com", "whatever-password-1")
            await _login(http, "nobody-2@example.com", "whatever-password-2")
            refused = await _login(http, user.email, KNOWN_PASSWORD)

        assert refused.status_code == 429
        assert refused.json()["code"] == "too_many_attempts"
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["RateLimit-Remaining"] == "0"

    async def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(
        self, resources: AppResources, tmp_root: Path
    ) -> None:
        user = await seed_user(resources)
        spoofed = {"X-Forwarded-For": "192.0.2.99"}
        async with client_with(resources, tmp_root) as (http, _):
            untrusted = await http.post(
                f"{API}/auth/login",
                json={"email": user.email, "password": KNOWN_PASSWORD},
                headers=spoofed,
            )
        async with client_with(resources, tmp_root, trusted_proxies=["203.0.113.0/24"]) as (
            http,
            _,
        ):
            trusted = await http.post(
                f"{API}/auth/login",
                json={"email": user.email, "password": KNOWN_PASSWORD},
                headers=spoofed,
            )

        assert untrusted.status_code == trusted.status_code == 200
        ips = [e.ip_address for e in await events(resources, "login_succeeded")]
        assert ips == ["203.0.113.10", "192.0.2.99"]


class TestLockout:
    async def test_locks_after_threshold_even_for_the_right_password(
        self, resources: AppResources, tmp_root: Path
    ) -> None:
        user = await seed_user(resources)
        async with client_with(resources, tmp_root, login_lockout_threshold=3) as (http, _):
            failures = [await _login(http, user.email, f"wrong-password-{i}xx") for i in range(3)]
            locked = await _login(http, user.email.upper(), KNOWN_PASSWORD)

        assert [r.status_code for r in failures] == [401, 401, 401]
        assert locked.status_code == 429
        assert locked.json()["code"] == "too_many_attempts"
        assert 14 * 60 <= int(locked.headers["Retry-After"]) <= 15 * 60
        [lock_event] = await events(resources, "login_locked")
        assert lock_event.user_id == user.id

    async def test_unknown_emails_lock_the_same_way(
        self, resources: AppResources, tmp_root: Path
    ) -> None:
        ghost = "ghost-account@example.com"
        async with client_with(resources, tmp_root, login_lockout_threshold=2) as (http, _):
            first = [await _login(http, ghost, "wrong-password-1x") for _ in range(2)]
            locked = await _login(http, f"  {ghost.upper()}", "wrong-password-1x")

        assert [r.status_code for r in first] == [401, 401]
        assert locked.status_code == 429
        assert locked.json()["code"] == "too_many_attempts"

    async def test_success_before_the_threshold_resets_the_count(
        self, resources: AppResources, tmp_root: Path
    ) -> None:
        user = await seed_user(resources)
        async with client_with(resources, tmp_root, login_lockout_threshold=2) as (http, _):
            await _login(http, user.email, "wrong-password-1x")
            ok = await _login(http, user.email, KNOWN_PASSWORD)
            after = await _login(http, user.email, "wrong-password-2x")
            still_ok = await _login(http, user.email, KNOWN_PASSWORD)

        assert ok.status_code == still_ok.status_code == 200
        assert after.status_code == 401

    async def test_falls_back_to_the_database_when_the_kv_store_is_down(
        self, resources: AppResources, tmp_root: Path
    ) -> None:
        user = await seed_user(resources)
        async with client_with(
            resources, tmp_root, kv=UnreachableKeyValueStore(), login_lockout_threshold=2
        ) as (http, _):
            ok = await _login(http, user.email, KNOWN_PASSWORD)
            me = await http.get(f"{API}/auth/me", headers=bearer(ok.json()["access_token"]))
            failures = [await _login(http, user.email, "wrong-password-1x") for _ in range(2)]
            locked = await _login(http, user.email, KNOWN_PASSWORD)

        assert ok.status_code == 200
        assert me.status_code == 200
        assert [r.status_code for r in failures] == [401, 401]
        assert locked.status_code == 429
        stored = await _reload(resources, user.id)
        assert stored.locked_until is not None
        assert stored.locked_until > utcnow() + timedelta(minutes=14)
        # The database lock outlives the outage: honoured with the KV store back, too.
        again = await _login_with_app(resources, tmp_root, user.email)
        assert again.status_code == 429


async def _login_with_app(resources: AppResources, tmp_root: Path, email: str) -> httpx.Response:
    async with client_with(resources, tmp_root) as (http, _):
        return await _login(http, email, KNOWN_PASSWORD)


class TestLoginUserRow:
    async def test_email_lookup_is_case_insensitive_in_storage(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        user = await seed_user(resources, email="mixed.case@example.com")
        async with session_scope(resources.session_factory) as session:
            stored = (
                await session.execute(select(User.email).where(User.id == user.id))
            ).scalar_one()
        response = await _login(client, "Mixed.Case@EXAMPLE.com", KNOWN_PASSWORD)

        assert stored == "mixed.case@example.com"
        assert response.status_code == 200
