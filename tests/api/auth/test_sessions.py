"""Refresh rotation and reuse detection, logout, session listing and revocation."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
from sqlalchemy import func, select

from dashtam.core.database import session_scope
from dashtam.core.state import AppResources
from dashtam.core.types import utcnow
from dashtam.models.auth import AuthSession, RefreshToken
from tests.api.auth.conftest import API, bearer, events, problem_without_request_id
from tests.support.factories import seed_login, seed_user


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(f"{API}/auth/refresh", json={"refresh_token": token})


async def _session_row(resources: AppResources, session_id: uuid.UUID) -> AuthSession:
    async with session_scope(resources.session_factory) as session:
        row = await session.get(AuthSession, session_id)
        assert row is not None
        return row


async def _live_refresh_tokens(resources: AppResources, session_id: uuid.UUID) -> int:
    async with session_scope(resources.session_factory) as session:
        count = await session.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .join(AuthSession, AuthSession.id == RefreshToken.session_id)  # type: ignore[arg-type]
            .where(
                RefreshToken.session_id == session_id,
                RefreshToken.used_at.is_(None),  # type: ignore[union-attr]
                AuthSession.revoked_at.is_(None),  # type: ignore[union-attr]
            )
        )
        return int(count or 0)


class TestRefresh:
    async def test_rotates_the_pair_and_spends_the_old_token(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        login = await seed_login(resources)
        before = await _session_row(resources, login.tokens.session_id)
        response = await _refresh(client, login.tokens.refresh_token)

        assert response.status_code == 200
        body = response.json()
        assert set(body) == {
            "access_token",
            "refresh_token",
            "token_type",
            "expires_in",
            "refresh_expires_in",
        }
        assert body["refresh_token"] != login.tokens.refresh_token
        assert body["refresh_expires_in"] <= 30 * 86400
        me = await client.get(f"{API}/auth/me", headers=bearer(body["access_token"]))
        assert me.status_code == 200
        after = await _session_row(resources, login.tokens.session_id)
        assert after.last_used_at > before.last_used_at
        assert after.expires_at == before.expires_at  # absolute: refresh never extends it

    async def test_replaying_a_spent_token_revokes_the_whole_session(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        login = await seed_login(resources)
        rotated = (await _refresh(client, login.tokens.refresh_token)).json()

        replay = await _refresh(client, login.tokens.refresh_token)
        successor = await _refresh(client, rotated["refresh_token"])
        old_access = await client.get(f"{API}/auth/me", headers=login.headers)
        new_access = await client.get(f"{API}/auth/me", headers=bearer(rotated["access_token"]))

        assert replay.status_code == 401
        assert replay.json()["code"] == "invalid_refresh_token"
        assert replay.headers["WWW-Authenticate"] == "Bearer"
        assert successor.status_code == 401
        assert old_access.status_code == new_access.status_code == 401
        row = await _session_row(resources, login.tokens.session_id)
        assert row.revoked_at is not None
        assert row.revoke_reason == "refresh_token_reuse"
        reuse = await events(resources, "refresh_token_reused")
        assert reuse[0].user_id == login.user.id
        assert reuse[0].details["session_id"] == str(login.tokens.session_id)

    async def test_unknown_and_expired_tokens_get_the_same_401(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        old = await seed_login(resources, now=utcnow() - timedelta(days=31))
        expired = await _refresh(client, old.tokens.refresh_token)
        unknown = await _refresh(client, "x" * 43)

        assert expired.status_code == unknown.status_code == 401
        assert problem_without_request_id(expired) == problem_without_request_id(unknown)
        assert (await _session_row(resources, old.tokens.session_id)).revoked_at is None

    async def test_twenty_parallel_refreshes_have_exactly_one_winner(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        login = await seed_login(resources)
        responses = await asyncio.gather(
            *(_refresh(client, login.tokens.refresh_token) for _ in range(20))
        )

        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [401] * 19
        assert await _live_refresh_tokens(resources, login.tokens.session_id) <= 1

    async def test_unknown_fields_are_422(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            f"{API}/auth/refresh", json={"refresh_token": "x" * 43, "user_id": "1"}
        )
        assert response.status_code == 422


class TestLogout:
    async def test_revokes_the_session_and_its_tokens_at_once(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        login = await seed_login(resources)
        assert (await client.get(f"{API}/auth/me", headers=login.headers)).status_code == 200

        response = await client.post(f"{API}/auth/logout", headers=login.headers)
        me = await client.get(f"{API}/auth/me", headers=login.headers)
        refresh = await _refresh(client, login.tokens.refresh_token)

        assert response.status_code == 204
        assert response.content == b""
        assert me.status_code == 401
        assert me.json()["code"] == "invalid_token"
        assert refresh.status_code == 401
        row = await _session_row(resources, login.tokens.session_id)
        assert row.revoke_reason == "logout"
        assert [e.user_id for e in await events(resources, "session_revoked")] == [login.user.id]

    async def test_a_given_refresh_token_of_own_other_session_is_revoked_too(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        user = await seed_user(resources)
        here = await seed_login(resources, user)
        there = await seed_login(resources, user)
        stranger = await seed_login(resources)

        await client.post(
            f"{API}/auth/logout",
            headers=here.headers,
            json={"refresh_token": there.tokens.refresh_token},
        )
        await client.post(
            f"{API}/auth/logout",
            headers=(await seed_login(resources, user)).headers,
            json={"refresh_token": stranger.tokens.refresh_token},
        )

        assert (await _session_row(resources, there.tokens.session_id)).revoked_at is not None
        assert (await _session_row(resources, stranger.tokens.session_id)).revoked_at is None
        assert (await client.get(f"{API}/auth/me", headers=stranger.headers)).status_code == 200

    async def test_without_a_token_is_401_with_a_bearer_challenge(
        self, client: httpx.AsyncClient
    ) -> None:
        missing = await client.post(f"{API}/auth/logout")
        garbage = await client.post(f"{API}/auth/logout", headers=bearer("not.a.jwt"))
        basic = await client.post(f"{API}/auth/logout", headers={"Authorization": "Basic eDp5"})

        assert missing.status_code == garbage.status_code == basic.status_code == 401
        assert missing.json()["code"] == basic.json()["code"] == "not_authenticated"
        assert garbage.json()["code"] == "invalid_token"
        assert missing.headers["WWW-Authenticate"] == "Bearer"

    async def test_unknown_fields_are_422(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        login = await seed_login(resources)
        response = await client.post(
            f"{API}/auth/logout", headers=login.headers, json={"everywhere": True}
        )
        assert response.status_code == 422
        assert (await client.get(f"{API}/auth/me", headers=login.headers)).status_code == 200


class TestListSessions:
    async def test_lists_own_live_sessions_with_the_current_one_marked(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        user = await seed_user(resources)
        older = await seed_login(resources, user, user_agent="old-phone")
        current = await seed_login(resources, user, user_agent="laptop")
        ended = await seed_login(resources, user)
        await client.post(f"{API}/auth/logout", headers=ended.headers)
        await seed_login(resources)  # someone else's

        response = await client.get(f"{API}/auth/sessions", headers=current.headers)

        assert response.status_code == 200
        body = response.json()
        assert body["has_more"] is False
        assert body["next_cursor"] is None
        ids = [item["id"] for item in body["items"]]
        assert ids == [str(current.tokens.session_id), str(older.tokens.session_id)]
        first = body["items"][0]
        assert first["is_current"] is True
        assert body["items"][1]["is_current"] is False
        assert first["user_agent"] == "laptop"
        assert first["ip_address"] == "198.51.100.7"
        assert set(first) >= {"created_at", "last_used_at", "expires_at"}


class TestRevokeSession:
    async def test_revokes_one_own_session(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        user = await seed_user(resources)
        mine = await seed_login(resources, user)
        other = await seed_login(resources, user)

        response = await client.delete(
            f"{API}/auth/sessions/{other.tokens.session_id}", headers=mine.headers
        )

        assert response.status_code == 204
        assert (await client.get(f"{API}/auth/me", headers=other.headers)).status_code == 401
        assert (await client.get(f"{API}/auth/me", headers=mine.headers)).status_code == 200

    async def test_another_users_session_is_404_and_stays_alive(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        alice = await seed_login(resources)
        mallory = await seed_login(resources)

        listed = await client.get(f"{API}/auth/sessions", headers=mallory.headers)
        response = await client.delete(
            f"{API}/auth/sessions/{alice.tokens.session_id}", headers=mallory.headers
        )
        unknown = await client.delete(
            f"{API}/auth/sessions/{uuid.uuid4()}", headers=mallory.headers
        )

        assert str(alice.tokens.session_id) not in listed.text
        assert response.status_code == unknown.status_code == 404
        assert problem_without_request_id(response) == problem_without_request_id(unknown)
        assert response.json()["code"] == "session_not_found"
        assert (await client.get(f"{API}/auth/me", headers=alice.headers)).status_code == 200
        assert (await _refresh(client, alice.tokens.refresh_token)).status_code == 200

    async def test_malformed_id_is_422(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        login = await seed_login(resources)
        response = await client.delete(f"{API}/auth/sessions/not-a-uuid", headers=login.headers)
        assert response.status_code == 422


class TestRevokeOtherSessions:
    async def test_revokes_all_but_the_current_session_and_nobody_elses(
        self, client: httpx.AsyncClient, resources: AppResources
    ) -> None:
        user = await seed_user(resources)
        current = await seed_login(resources, user)
        others = [await seed_login(resources, user) for _ in range(2)]
        stranger = await seed_login(resources)

        response = await client.delete(f"{API}/auth/sessions", headers=current.headers)

        assert response.status_code == 204
        for other in others:
            assert (await client.get(f"{API}/auth/me", headers=other.headers)).status_code == 401
        assert (await client.get(f"{API}/auth/me", headers=current.headers)).status_code == 200
        assert (await client.get(f"{API}/auth/me", headers=stranger.headers)).status_code == 200
        listed = await client.get(f"{API}/auth/sessions", headers=current.headers)
        assert [i["id"] for i in listed.json()["items"]] == [str(current.tokens.session_id)]
