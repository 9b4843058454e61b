"""`/providers/{id}/authorization`: start, status, callback, refresh now, disconnect."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import update

from dashtam.core.state import AppResources
from dashtam.core.types import utcnow
from dashtam.models.provider import OAuthState
from tests.integration.connections.harness import API, Rig, rig

STATE_SHAPE = re.compile(r"^[0-9a-f-]{36}\.[A-Za-z0-9_-]{43}$")


async def _nothing_stored(connections: Rig) -> None:
    assert await connections.sql("SELECT id FROM provider_tokens") == []
    statuses = await connections.sql("SELECT status FROM providers")
    assert all(row["status"] == "pending" for row in statuses)


class TestStart:
    async def test_returns_url_state_and_expiry_and_stores_only_a_hash(
        self, connections: Rig
    ) -> None:
        who = await connections.login()
        provider_id = await connections.create_provider(who)

        response = await connections.api.post(
            f"{API}/providers/{provider_id}/authorization", headers=who.headers
        )

        assert response.status_code == 201
        body = response.json()
        assert STATE_SHAPE.fullmatch(body["state"])
        assert body["state"].startswith(provider_id + ".")
        query = parse_qs(urlsplit(body["authorization_url"]).query)
        assert query["state"] == [body["state"]]
        assert query["redirect_uri"] == ["https://127.0.0.1:8182"]
        rows = await connections.sql("SELECT * FROM oauth_states")
        assert len(rows) == 1
        assert body["state"] not in str(rows[0])
        assert body["state"].split(".")[1] not in str(rows[0])
        assert rows[0]["code_verifier_encrypted"] is None  # Schwab has no PKCE
        lifetime = datetime.fromisoformat(body["expires_at"]) - utcnow()
        assert timedelta(minutes=9) < lifetime <= timedelta(minutes=10)
        assert response.headers["cache-control"] == "no-store"

    async def test_starts_are_rate_limited_per_user(
        self, resources: AppResources, tmp_root: Path
    ) -> None:
        async with rig(resources, tmp_root, rate_limit_provider_authorization="2/hour") as limited:
            who, other = await limited.login(), await limited.login()
            provider_id = await limited.create_provider(who)
            theirs = await limited.create_provider(other)
            for _ in range(2):
                await limited.start(who, provider_id)

            refused = await limited.api.post(
                f"{API}/providers/{provider_id}/authorization", headers=who.headers
            )
            allowed = await limited.api.post(
                f"{API}/providers/{theirs}/authorization", headers=other.headers
            )

        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert allowed.status_code == 201


class TestCallback:
    async def test_success_stores_tokens_activates_and_audits(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.create_provider(who)
        started = await connections.start(who, provider_id)
        code, state = await connections.institution_login(started["authorization_url"])

        response = await connections.callback(provider_id, code=code, state=state)

        assert response.status_code == 200
        assert response.json()["provider_id"] == provider_id
        assert response.json()["status"] == "active"
        status = await connections.status(who, provider_id)
        assert status["status"] == "active"
        assert status["scope"] == "api"
        window = (
            utcnow() + timedelta(days=7) - timedelta(minutes=5),
            utcnow() + timedelta(days=7),
        )
        assert window[0].isoformat() < status["refresh_expires_at"] < window[1].isoformat()
        audit = await connections.sql(
            "SELECT outcome, details FROM provider_audit_logs "
            "WHERE action = 'authorization.callback'"
        )
        assert [row["outcome"] for row in audit] == ["success"]
        assert code not in str(audit) and state not in str(audit)

    async def test_browser_gets_an_escaped_html_page(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.create_provider(who)
        started = await connections.start(who, provider_id)
        code, state = await connections.institution_login(started["authorization_url"])

        response = await connections.callback(
            provider_id, code=code, state=state, headers={"Accept": "text/html"}
        )
        failed = await connections.callback(
            provider_id,
            code=code,
            state=state,
            headers={"Accept": "text/html,application/xhtml+xml"},
        )

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert 'data-outcome="connected"' in response.text
        assert failed.status_code == 400
        assert 'data-outcome="failed"' in failed.text
        assert state not in failed.text and code not in failed.text

    async def test_replayed_state_is_invalid_and_changes_nothing(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.create_provider(who)
        started = await connections.start(who, provider_id)
        code, state = await connections.institution_login(started["authorization_url"])
        first = await connections.callback(provider_id, code=code, state=state)
        tokens_before = await connections.sql("SELECT * FROM provider_tokens")
        grants_before = await connections.token_grants()

        replay = await connections.callback(provider_id, code=code, state=state)

        assert first.status_code == 200
        assert replay.status_code == 400
        assert replay.json()["code"] == "invalid_state"
        assert await connections.sql("SELECT * FROM provider_tokens") == tokens_before
        assert await connections.token_grants() == grants_before

    @pytest.mark.parametrize(
        "mangle",
        [
            lambda pid, state: "",
            lambda pid, state: "garbage",
            lambda pid, state: state[:-1] + ("A" if state[-1] != "A" else "B"),
            lambda pid, state: state + "x",
            lambda pid, state: pid,
            lambda pid, state: "<script>alert(1)</script>",
        ],
        ids=["empty", "garbage", "tampered", "too-long", "prefix-only", "markup"],
    )
    async def test_malformed_or_unknown_state_is_invalid(self, connections: Rig, mangle) -> None:  # type: ignore[no-untyped-def]
        who = await connections.login()
        provider_id = await connections.create_provider(who)
        started = await connections.start(who, provider_id)
        code, state = await connections.institution_login(started["authorization_url"])

        response = await connections.callback(
            provider_id, code=code, state=mangle(provider_id, state)
        )

        assert response.status_code == 400
        assert response.json()["code"] == "invalid_state"
        await _nothing_stored(connections)
        # The real state is still usable: a bad attempt does not burn it.
        ok = await connections.callback(provider_id, code=code, state=state)
        assert ok.status_code == 200

    async def test_expired_state_is_invalid(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.create_provider(who)
        started = await connections.start(who, provider_id)
        code, state = await connections.institution_login(started["authorization_url"])
        async with connections.resources.engine.begin() as conn:
            await conn.execute(
                update(OAuthState).values(expires_at=utcnow() - timedelta(seconds=1))
            )

        response = await connections.callback(provider_id, code=code, state=state)

        assert response.status_code == 400
        assert response.json()["code"] == "invalid_state"
        await _nothing_stored(connections)

    async def test_another_providers_state_is_invalid(self, connections: Rig) -> None:
        who = await connections.login()
        first = await connections.create_provider(who, "First")
        second = await connections.create_provider(who, "Second")
        started = await connections.start(who, first)
        code, state = await connections.institution_login(started["authorization_url"])

        response = await connections.callback(second, code=code, state=state)

        assert response.status_code == 400
        assert response.json()["code"] == "invalid_state"
        await _nothing_stored(connections)

    async def test_another_users_state_cannot_connect_my_provider(self, connections: Rig) -> None:
        alice, mallory = await connections.login(), await connections.login()
        alices = await connections.create_provider(alice)
        mallorys = await connections.create_provider(mallory)
        started = await connections.start(mallory, mallorys)
        code, state = await connections.institution_login(started["authorization_url"])
        # Mallory rewrites her state's prefix to Alice's provider id.
        forged = f"{alices}.{state.split('.', 1)[1]}"

        response = await connections.callback(alices, code=code, state=forged)

        assert response.status_code == 400
        assert response.json()["code"] == "invalid_state"
        await _nothing_stored(connections)

    async def test_access_denied_is_authorization_failed(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.create_provider(who)
        started = await connections.start(who, provider_id)

        response = await connections.callback(
            provider_id, error="access_denied", state=started["state"]
        )

        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "authorization_failed"
        assert "declined" in body["detail"]
        await _nothing_stored(connections)
        audit = await connections.sql(
            "SELECT outcome FROM provider_audit_logs WHERE action = 'authorization.callback'"
        )
        assert [row["outcome"] for row in audit] == ["failure"]

    async def test_used_code_is_authorization_failed(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.create_provider(who)
        started = await connections.start(who, provider_id)
        code, state = await connections.institution_login(started["authorization_url"])
        await connections.callback(provider_id, code=code, state=state)
        again = await connections.start(who, provider_id)

        response = await connections.callback(provider_id, code=code, state=again["state"])

        assert response.status_code == 400
        assert response.json()["code"] == "authorization_failed"

    async def test_missing_code_and_error_is_rejected(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.create_provider(who)
        started = await connections.start(who, provider_id)

        response = await connections.callback(provider_id, state=started["state"])

        assert response.status_code == 400
        await _nothing_stored(connections)

    @pytest.mark.parametrize(
        ("fault", "status", "code"),
        [
            ({"kind": "status", "status": 503, "count": 5}, 503, "provider_unavailable"),
            ({"kind": "malformed", "count": 5}, 502, "provider_error"),
            (
                {"kind": "status", "status": 429, "count": 5, "retry_after": 0},
                503,
                "provider_rate_limited",
            ),
        ],
    )
    async def test_institution_failure_maps_to_5xx_and_stores_nothing(
        self, connections: Rig, fault: dict[str, object], status: int, code: str
    ) -> None:
        who = await connections.login()
        provider_id = await connections.create_provider(who)
        started = await connections.start(who, provider_id)
        auth_code, state = await connections.institution_login(started["authorization_url"])
        await connections.fault(path_prefix="/v1/oauth/token", **fault)

        response = await connections.callback(provider_id, code=auth_code, state=state)

        assert response.status_code == status
        assert response.json()["code"] == code
        await _nothing_stored(connections)


class TestStatusRefreshDisconnect:
    async def test_pending_provider_status_has_no_expiries(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.create_provider(who)

        status = await connections.status(who, provider_id)

        assert status["status"] == "pending"
        assert status["access_expires_at"] is None

    async def test_refresh_now_renews_the_access_token_only(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.connect(who)
        before = await connections.status(who, provider_id)

        response = await connections.api.patch(
            f"{API}/providers/{provider_id}/authorization", headers=who.headers
        )

        assert response.status_code == 200
        after = response.json()
        assert after["refresh_count"] == 1
        assert after["last_refreshed_at"] is not None
        assert after["refresh_expires_at"] == before["refresh_expires_at"]
        assert (await connections.token_grants())["refresh_token"] == 1

    async def test_refresh_of_pending_provider_is_409_not_connected(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.create_provider(who)

        response = await connections.api.patch(
            f"{API}/providers/{provider_id}/authorization", headers=who.headers
        )

        assert response.status_code == 409
        assert response.json()["code"] == "not_connected"

    async def test_dead_refresh_token_is_409_reauth_required(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.connect(who)
        await connections.sim.post("/control/users/demo/tokens", json={"action": "revoke-refresh"})

        response = await connections.api.patch(
            f"{API}/providers/{provider_id}/authorization", headers=who.headers
        )
        again = await connections.api.patch(
            f"{API}/providers/{provider_id}/authorization", headers=who.headers
        )

        assert response.status_code == 409
        assert response.json()["code"] == "reauth_required"
        assert again.status_code == 409
        assert (await connections.status(who, provider_id))["status"] == "reauth_required"
        assert (await connections.token_grants())["refresh_token"] == 1

    async def test_refresh_during_an_outage_is_503_and_keeps_status(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.connect(who)
        tokens_before = await connections.sql("SELECT * FROM provider_tokens")
        await connections.fault(kind="status", status=503, count=10, path_prefix="/v1/oauth/token")

        response = await connections.api.patch(
            f"{API}/providers/{provider_id}/authorization", headers=who.headers
        )

        assert response.status_code == 503
        assert response.json()["code"] == "provider_unavailable"
        assert (await connections.status(who, provider_id))["status"] == "active"
        assert await connections.sql("SELECT * FROM provider_tokens") == tokens_before

    async def test_disconnect_destroys_tokens_and_keeps_the_provider(
        self, connections: Rig
    ) -> None:
        who = await connections.login()
        provider_id = await connections.connect(who)

        response = await connections.api.delete(
            f"{API}/providers/{provider_id}/authorization", headers=who.headers
        )

        assert response.status_code == 204
        assert await connections.sql("SELECT id FROM provider_tokens") == []
        status = await connections.status(who, provider_id)
        assert status["status"] == "disconnected"
        refresh = await connections.api.patch(
            f"{API}/providers/{provider_id}/authorization", headers=who.headers
        )
        assert refresh.status_code == 409
        await connections.reauthorize(who, provider_id)
        assert (await connections.status(who, provider_id))["status"] == "active"


class TestAuditLogs:
    async def test_pages_newest_first_without_secrets(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.connect(who)
        await connections.api.patch(
            f"{API}/providers/{provider_id}/authorization", headers=who.headers
        )
        for alias in ("Renamed once", "Renamed twice"):
            await connections.api.patch(
                f"{API}/providers/{provider_id}", json={"alias": alias}, headers=who.headers
            )

        first = await connections.api.get(
            f"{API}/providers/{provider_id}/audit-logs", params={"limit": 2}, headers=who.headers
        )
        second = await connections.api.get(
            f"{API}/providers/{provider_id}/audit-logs",
            params={"limit": 50, "cursor": first.json()["next_cursor"]},
            headers=who.headers,
        )
        bad_cursor = await connections.api.get(
            f"{API}/providers/{provider_id}/audit-logs",
            params={"cursor": "!!"},
            headers=who.headers,
        )

        assert first.status_code == 200
        assert first.json()["has_more"] is True
        assert len(first.json()["items"]) == 2
        rest = second.json()["items"]
        assert second.json()["has_more"] is False
        actions = [r["action"] for r in first.json()["items"] + rest]
        assert actions == [
            "provider.renamed",
            "provider.renamed",
            "token.refreshed",
            "authorization.callback",
            "authorization.started",
            "provider.created",
        ]
        assert all(r["ip_address"] == "203.0.113.10" and r["request_id"] for r in rest)
        assert bad_cursor.status_code == 400
        raw = await connections.sql("SELECT details FROM provider_audit_logs")
        tokens = await connections.sql("SELECT access_token_encrypted FROM provider_tokens")
        assert tokens[0]["access_token_encrypted"] not in str(raw)
