"""`POST /password-resets`, `GET` and `PATCH /password-resets/{token}`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx

from dashtam.core.state import AppResources
from tests.api.auth.conftest import API, client_with, events, mail_to, problem_without_request_id
from tests.support.factories import (
    KNOWN_PASSWORD,
    NEW_PASSWORD,
    seed_login,
    seed_reset_token,
    seed_user,
)
from tests.support.mail import extract_token


async def _request(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post(f"{API}/password-resets", json={"email": email})


async def _complete(client: httpx.AsyncClient, token: str, password: str) -> httpx.Response:
    return await client.patch(f"{API}/password-resets/{token}", json={"new_password": password})


class TestRequestReset:
    async def test_same_answer_for_known_and_unknown_emails(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        user = await seed_user(resources)
        known = await _request(client, user.email.upper())
        unknown = await _request(client, "nobody-at-all@example.com")

        assert known.status_code == unknown.status_code == 202
        assert known.json() == unknown.json()
        [message] = mail_to(resources, user.email)
        token = extract_token(message, "password_reset")
        assert (await client.get(f"{API}/password-resets/{token}")).status_code == 200
        assert mail_to(resources, "nobody-at-all@example.com") == []

    async def test_a_newer_request_supersedes_the_older_token(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        user = await seed_user(resources)
        await _request(client, user.email)
        await _request(client, user.email)
        first, second = (extract_token(m, "password_reset") for m in mail_to(resources, user.email))

        assert (await client.get(f"{API}/password-resets/{first}")).status_code == 404
        assert (await client.get(f"{API}/password-resets/{second}")).status_code == 200

    async def test_is_throttled_per_ip(self, resources: AppResources, tmp_root: Path) -> None:
        async with client_with(resources, tmp_root, rate_limit_reset="1/minute") as (http, _):
            allowed = await _request(http, "a-reset@example.com")
            refused = await _request(http, "b-reset@example.com")

        assert allowed.status_code == 202
        assert allowed.headers["RateLimit-Remaining"] == "0"
        assert refused.status_code == 429
        assert refused.json()["code"] == "too_many_attempts"
        assert "Retry-After" in refused.headers

    async def test_unknown_fields_are_422(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            f"{API}/password-resets", json={"email": "a@example.com", "new_password": "x"}
        )
        assert response.status_code == 422


class TestCheckResetToken:
    async def test_live_token_is_valid_until_its_expiry(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        user = await seed_user(resources)
        token = await seed_reset_token(resources, user)
        response = await client.get(f"{API}/password-resets/{token}")

        assert response.status_code == 200
        assert response.json()["valid"] is True
        assert response.json()["expires_at"].endswith("Z")

    async def test_unknown_expired_and_used_tokens_are_404(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        user = await seed_user(resources)
        expired = await seed_reset_token(resources, user, expires_in=timedelta(seconds=-1))
        used = await seed_reset_token(resources, user, used=True)
        answers = [
            await client.get(f"{API}/password-resets/{token}")
            for token in ("unknown-token-value", expired, used)
        ]

        assert {r.status_code for r in answers} == {404}
        assert answers[0].json()["code"] == "invalid_token"
        bodies = [problem_without_request_id(r) for r in answers]
        assert bodies[0] == bodies[1] == bodies[2]


class TestCompleteReset:
    async def test_sets_the_password_revokes_sessions_and_spends_the_token(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        user = await seed_user(resources)
        session = await seed_login(resources, user)
        await _request(client, user.email)
        token = extract_token(mail_to(resources, user.email)[-1], "password_reset")

        done = await _complete(client, token, NEW_PASSWORD)
        replay = await _complete(client, token, "another-fine-password-9")

        assert done.status_code == 200
        assert set(done.json()) == {"message"}
        assert replay.status_code == 404
        assert replay.json()["code"] == "invalid_token"
        assert (await client.get(f"{API}/auth/me", headers=session.headers)).status_code == 401
        refresh = await client.post(
            f"{API}/auth/refresh", json={"refresh_token": session.tokens.refresh_token}
        )
        assert refresh.status_code == 401
        old = await client.post(
            f"{API}/auth/login", json={"email": user.email, "password": KNOWN_PASSWORD}
        )
        new = await client.post(
            f"{API}/auth/login", json={"email": user.email, "password": NEW_PASSWORD}
        )
        assert old.status_code == 401
        assert new.status_code == 200
        assert "password_changed" in str(mail_to(resources, user.email)[-1]["Subject"]).lower() or (
            len(mail_to(resources, user.email)) == 2
        )
        assert [e.user_id for e in await events(resources, "password_reset")] == [user.id]

    async def test_weak_password_is_422_and_the_token_stays_usable(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        user = await seed_user(resources)
        token = await seed_reset_token(resources, user)

        weak = await _complete(client, token, "short")
        strong = await _complete(client, token, NEW_PASSWORD)

        assert weak.status_code == 422
        assert weak.json()["code"] == "weak_password"
        assert strong.status_code == 200

    async def test_a_completed_reset_lifts_the_login_lockout(
        self, resources: AppResources, tmp_root: Path
    ) -> None:
        user = await seed_user(resources)
        token = await seed_reset_token(resources, user)
        async with client_with(resources, tmp_root, login_lockout_threshold=2) as (http, _):
            for _ in range(2):
                await http.post(
                    f"{API}/auth/login", json={"email": user.email, "password": "wrong-one-123"}
                )
            locked = await http.post(
                f"{API}/auth/login", json={"email": user.email, "password": KNOWN_PASSWORD}
            )
            await _complete(http, token, NEW_PASSWORD)
            unlocked = await http.post(
                f"{API}/auth/login", json={"email": user.email, "password": NEW_PASSWORD}
            )

        assert locked.status_code == 429
        assert unlocked.status_code == 200

    async def test_unknown_token_and_unknown_fields(self, client: httpx.AsyncClient) -> None:
        unknown = await _complete(client, "no-such-token-here", NEW_PASSWORD)
        extra = await client.patch(
            f"{API}/password-resets/some-token",
            json={"new_password": NEW_PASSWORD, "email": "a@example.com"},
        )

        assert unknown.status_code == 404
        assert unknown.json()["code"] == "invalid_token"
        assert extra.status_code == 422
