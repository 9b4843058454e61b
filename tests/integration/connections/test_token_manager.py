"""`TokenManager`: refresh ahead of expiry, single flight, rotation, time travel, 401 retry."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from dashtam.core.state import AppResources
from dashtam.core.types import utcnow
from dashtam.models.provider import ProviderToken
from dashtam.providers.errors import AccessTokenRejected, ProviderUnavailable, ReauthRequired
from dashtam.providers.registry import registry_from
from dashtam.services.connections.tokens import TokenManager
from tests.integration.connections.harness import API, Rig, rig

HALF_HOUR_AND_A_MINUTE = 31 * 60
SEVEN_DAYS_AND_A_MINUTE = 7 * 86_400 + 60


async def _expire_soon(connections: Rig, provider_id: uuid.UUID, within: timedelta) -> None:
    """Make our stored access expiry fall inside the refresh margin."""
    async with connections.resources.engine.begin() as conn:
        await conn.execute(
            update(ProviderToken)
            .where(ProviderToken.provider_id == provider_id)  # type: ignore[arg-type]
            .values(access_expires_at=utcnow() + within)
        )


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)


class TestAccessToken:
    async def test_fresh_token_is_served_without_calling_the_institution(
        self, connections: Rig
    ) -> None:
        who = await connections.login()
        provider_id = _uuid(await connections.connect(who))
        manager = TokenManager(connections.resources)

        first = await manager.access_token(provider_id)
        second = await manager.access_token(provider_id)

        assert first == second
        assert "refresh_token" not in await connections.token_grants()

    async def test_twenty_concurrent_callers_cause_one_refresh(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = _uuid(await connections.connect(who))
        manager = TokenManager(connections.resources)
        before = await manager.access_token(provider_id)
        await _expire_soon(connections, provider_id, timedelta(minutes=2))

        tokens = await asyncio.gather(*(manager.access_token(provider_id) for _ in range(20)))

        assert len(set(tokens)) == 1
        assert tokens[0] != before
        assert (await connections.token_grants())["refresh_token"] == 1

    async def test_twenty_concurrent_refresh_requests_over_the_api_cause_one_refresh(
        self, connections: Rig
    ) -> None:
        who = await connections.login()
        provider_id = await connections.connect(who)

        responses = await asyncio.gather(
            *(
                connections.api.patch(
                    f"{API}/providers/{provider_id}/authorization", headers=who.headers
                )
                for _ in range(20)
            )
        )

        assert [r.status_code for r in responses] == [200] * 20
        assert (await connections.token_grants())["refresh_token"] == 1
        refreshed = await connections.sql(
            "SELECT id FROM provider_audit_logs WHERE action = 'token.refreshed'"
        )
        assert len(refreshed) == 1

    async def test_refresh_ahead_uses_our_clock(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = _uuid(await connections.connect(who))
        await connections.advance(HALF_HOUR_AND_A_MINUTE)
        later = TokenManager(
            connections.resources,
            clock=lambda: utcnow() + timedelta(seconds=HALF_HOUR_AND_A_MINUTE),
        )

        token = await later.access_token(provider_id)
        accounts = await registry_from(connections.resources).get("schwab").account_numbers(token)

        assert accounts
        assert (await connections.token_grants())["refresh_token"] == 1

    async def test_transient_failure_ahead_of_expiry_serves_the_old_token(
        self, connections: Rig
    ) -> None:
        who = await connections.login()
        provider_id = _uuid(await connections.connect(who))
        manager = TokenManager(connections.resources)
        before = await manager.access_token(provider_id)
        await _expire_soon(connections, provider_id, timedelta(minutes=2))
        await connections.fault(kind="status", status=503, count=10, path_prefix="/v1/oauth/token")

        token = await manager.access_token(provider_id)

        assert token == before
        rows = await connections.sql("SELECT status FROM providers")
        assert rows == [{"status": "active"}]
        failed = await connections.sql(
            "SELECT outcome FROM provider_audit_logs WHERE action = 'token.refresh_failed'"
        )
        assert failed == [{"outcome": "failure"}]
        with pytest.raises(ProviderUnavailable):
            await manager.access_token(provider_id, force_refresh=True)

    async def test_unreadable_token_reply_marks_error_until_the_next_success(
        self, connections: Rig
    ) -> None:
        who = await connections.login()
        provider_id = _uuid(await connections.connect(who))
        manager = TokenManager(connections.resources)
        await connections.fault(kind="malformed", count=1, path_prefix="/v1/oauth/token")

        with pytest.raises(Exception, match="could not read"):
            await manager.access_token(provider_id, force_refresh=True)
        broken = await connections.sql("SELECT status, last_error FROM providers")
        await manager.access_token(provider_id, force_refresh=True)
        healed = await connections.sql("SELECT status, last_error FROM providers")

        assert broken[0]["status"] == "error"
        assert broken[0]["last_error"]
        assert healed == [{"status": "active", "last_error": None}]


class TestRotation:
    @pytest.mark.parametrize(
        ("mode", "outcome"),
        [("same", "unchanged"), ("rotate", "rotated"), ("omit", "not_returned")],
    )
    async def test_each_refresh_mode_keeps_a_working_refresh_token(
        self, resources: AppResources, tmp_root: Path, mode: str, outcome: str
    ) -> None:
        async with rig(resources, tmp_root, simulator={"simulator_refresh_mode": mode}) as r:
            who = await r.login()
            provider_id = _uuid(await r.connect(who))
            manager = TokenManager(r.resources)
            initial = await manager.snapshot(provider_id)

            await manager.access_token(provider_id, force_refresh=True)
            after_one = await manager.snapshot(provider_id)
            await manager.access_token(provider_id, force_refresh=True)
            after_two = await manager.snapshot(provider_id)

            audit = await r.sql(
                "SELECT action, details FROM provider_audit_logs "
                "WHERE action LIKE 'token.%' ORDER BY created_at"
            )
            grants = await r.token_grants()

        assert grants["refresh_token"] == 2
        if mode == "rotate":
            assert after_one.refresh_token != initial.refresh_token
            assert after_two.refresh_token != after_one.refresh_token
        else:
            assert after_one.refresh_token == initial.refresh_token == after_two.refresh_token
        assert after_two.refresh_expires_at == initial.refresh_expires_at
        assert after_two.refresh_count == 2
        rotated = [row for row in audit if row["action"] == "token.rotated"]
        assert len(rotated) == (2 if mode == "rotate" else 0)
        refreshed = [row for row in audit if row["action"] == "token.refreshed"]
        assert len(refreshed) == 2
        assert outcome in str(refreshed[0]["details"])


class TestTimeTravel:
    async def test_half_an_hour_later_a_data_call_refreshes_transparently(
        self, connections: Rig
    ) -> None:
        who = await connections.login()
        provider_id = _uuid(await connections.connect(who))
        manager = TokenManager(connections.resources)
        client = registry_from(connections.resources).get("schwab")
        await connections.advance(HALF_HOUR_AND_A_MINUTE)

        accounts = await manager.call(provider_id, client.account_numbers)

        assert accounts
        assert (await connections.token_grants())["refresh_token"] == 1

    async def test_seven_days_later_reauth_is_required_then_reauthorizing_reactivates(
        self, connections: Rig
    ) -> None:
        who = await connections.login()
        provider_id = await connections.connect(who)
        manager = TokenManager(connections.resources)
        client = registry_from(connections.resources).get("schwab")
        token_row = await connections.sql("SELECT id FROM provider_tokens")
        await connections.advance(SEVEN_DAYS_AND_A_MINUTE)

        with pytest.raises(ReauthRequired):
            await manager.call(_uuid(provider_id), client.account_numbers)
        status = await connections.status(who, provider_id)
        audit = await connections.sql(
            "SELECT outcome FROM provider_audit_logs WHERE action = 'authorization.reauth_required'"
        )
        assert status["status"] == "reauth_required"
        assert audit == [{"outcome": "failure"}]
        with pytest.raises(ReauthRequired):
            await manager.access_token(_uuid(provider_id))
        grants_while_dead = (await connections.token_grants())["refresh_token"]

        await connections.reauthorize(who, provider_id)

        assert (await connections.status(who, provider_id))["status"] == "active"
        assert await connections.sql("SELECT id FROM provider_tokens") == token_row
        listed = await connections.api.get(f"{API}/providers", headers=who.headers)
        assert [p["id"] for p in listed.json()["items"]] == [provider_id]
        assert await manager.call(_uuid(provider_id), client.account_numbers)
        assert grants_while_dead == 1


class TestCall:
    async def test_a_401_causes_one_refresh_and_one_retry(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = _uuid(await connections.connect(who))
        manager = TokenManager(connections.resources)
        client = registry_from(connections.resources).get("schwab")
        await connections.sim.post("/control/users/demo/tokens", json={"action": "expire-access"})
        seen: list[str] = []

        async def fetch(token: str) -> object:
            seen.append(token)
            return await client.account_numbers(token)

        result = await manager.call(provider_id, fetch)

        assert result
        assert len(seen) == 2 and seen[0] != seen[1]
        assert (await connections.token_grants())["refresh_token"] == 1

    async def test_a_second_401_propagates_instead_of_looping(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = _uuid(await connections.connect(who))
        manager = TokenManager(connections.resources)
        calls = 0

        async def always_rejected(token: str) -> None:
            nonlocal calls
            calls += 1
            raise AccessTokenRejected(provider="schwab", reason="http_401")

        with pytest.raises(AccessTokenRejected):
            await manager.call(provider_id, always_rejected)

        assert calls == 2
        assert (await connections.token_grants())["refresh_token"] == 1

    async def test_concurrent_401s_share_one_refresh(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = _uuid(await connections.connect(who))
        manager = TokenManager(connections.resources)
        client = registry_from(connections.resources).get("schwab")
        await connections.sim.post("/control/users/demo/tokens", json={"action": "expire-access"})

        results = await asyncio.gather(
            *(manager.call(provider_id, client.account_numbers) for _ in range(10))
        )

        assert all(results)
        assert (await connections.token_grants())["refresh_token"] == 1
