"""`/provider-types` and `/providers`: CRUD, filters, errors, and strict per-user scoping."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from dashtam.core.state import AppResources
from tests.integration.connections.harness import API, Rig, rig


class TestProviderTypes:
    async def test_lists_schwab_as_configured_oauth2(self, connections: Rig) -> None:
        who = await connections.login()

        response = await connections.api.get(f"{API}/provider-types", headers=who.headers)

        assert response.status_code == 200
        items = {item["key"]: item for item in response.json()["items"]}
        assert items["schwab"]["auth_type"] == "oauth2"
        assert items["schwab"]["configured"] is True
        assert "refresh_token" in items["schwab"]["capabilities"]

    async def test_gets_one_type_and_404s_an_unknown_key(self, connections: Rig) -> None:
        who = await connections.login()

        found = await connections.api.get(f"{API}/provider-types/schwab", headers=who.headers)
        missing = await connections.api.get(f"{API}/provider-types/nope", headers=who.headers)

        assert found.status_code == 200
        assert found.json()["name"] == "Charles Schwab"
        assert missing.status_code == 404
        assert missing.json()["code"] == "provider_type_not_found"

    async def test_requires_a_bearer_token(self, connections: Rig) -> None:
        response = await connections.api.get(f"{API}/provider-types")

        assert response.status_code == 401


class TestCreate:
    async def test_creates_a_pending_provider_with_location(self, connections: Rig) -> None:
        who = await connections.login()

        response = await connections.api.post(
            f"{API}/providers",
            json={"provider_key": "schwab", "alias": "  My   brokerage "},
            headers=who.headers,
        )

        assert response.status_code == 201
        body = response.json()
        assert body["status"] == "pending"
        assert body["alias"] == "My brokerage"
        assert response.headers["location"] == f"{API}/providers/{body['id']}"
        audit = await connections.sql(
            "SELECT action, user_id FROM provider_audit_logs WHERE action = 'provider.created'"
        )
        assert len(audit) == 1

    async def test_unknown_provider_is_400(self, connections: Rig) -> None:
        who = await connections.login()

        response = await connections.api.post(
            f"{API}/providers", json={"provider_key": "chase", "alias": "x"}, headers=who.headers
        )

        assert response.status_code == 400
        assert response.json()["code"] == "unknown_provider"

    async def test_unconfigured_provider_is_400(
        self, resources: AppResources, tmp_root: Path
    ) -> None:
        async with rig(resources, tmp_root, schwab_app_key=None) as unconfigured:
            who = await unconfigured.login()

            response = await unconfigured.api.post(
                f"{API}/providers",
                json={"provider_key": "schwab", "alias": "x"},
                headers=who.headers,
            )

        assert response.status_code == 400
        assert response.json()["code"] == "provider_not_configured"

    async def test_duplicate_alias_is_409_but_other_users_may_reuse_it(
        self, connections: Rig
    ) -> None:
        alice, bob = await connections.login(), await connections.login()
        await connections.create_provider(alice, "Main")

        again = await connections.api.post(
            f"{API}/providers",
            json={"provider_key": "schwab", "alias": "Main"},
            headers=alice.headers,
        )
        other = await connections.api.post(
            f"{API}/providers",
            json={"provider_key": "schwab", "alias": "Main"},
            headers=bob.headers,
        )

        assert again.status_code == 409
        assert again.json()["code"] == "alias_taken"
        assert other.status_code == 201

    @pytest.mark.parametrize(
        "body",
        [
            {"provider_key": "schwab", "alias": "x", "status": "active"},
            {"provider_key": "schwab", "alias": "   "},
            {"provider_key": "schwab", "alias": "a" * 101},
            {"provider_key": "SCHWAB!", "alias": "x"},
            {"alias": "x"},
        ],
    )
    async def test_bad_bodies_are_422(self, connections: Rig, body: dict[str, object]) -> None:
        who = await connections.login()

        response = await connections.api.post(f"{API}/providers", json=body, headers=who.headers)

        assert response.status_code == 422
        assert await connections.sql("SELECT id FROM providers") == []


class TestListGetRename:
    async def test_lists_only_own_providers_with_filters(self, connections: Rig) -> None:
        alice, bob = await connections.login(), await connections.login()
        pending = await connections.create_provider(alice, "Pending one")
        active = await connections.connect(alice, "Active one")
        await connections.create_provider(bob, "Bob's")

        everything = await connections.api.get(f"{API}/providers", headers=alice.headers)
        only_active = await connections.api.get(
            f"{API}/providers", params={"status": "active"}, headers=alice.headers
        )
        by_key = await connections.api.get(
            f"{API}/providers", params={"provider_key": "other"}, headers=alice.headers
        )
        bad_status = await connections.api.get(
            f"{API}/providers", params={"status": "sleeping"}, headers=alice.headers
        )

        assert [p["id"] for p in everything.json()["items"]] == [pending, active]
        assert [p["id"] for p in only_active.json()["items"]] == [active]
        assert by_key.json()["items"] == []
        assert bad_status.status_code == 422

    async def test_renames_and_refuses_a_taken_alias(self, connections: Rig) -> None:
        who = await connections.login()
        first = await connections.create_provider(who, "First")
        await connections.create_provider(who, "Second")

        renamed = await connections.api.patch(
            f"{API}/providers/{first}", json={"alias": "Renamed"}, headers=who.headers
        )
        clash = await connections.api.patch(
            f"{API}/providers/{first}", json={"alias": "Second"}, headers=who.headers
        )
        extra = await connections.api.patch(
            f"{API}/providers/{first}",
            json={"alias": "Ok", "user_id": str(uuid.uuid4())},
            headers=who.headers,
        )

        assert renamed.status_code == 200
        assert renamed.json()["alias"] == "Renamed"
        assert clash.status_code == 409
        assert clash.json()["code"] == "alias_taken"
        assert extra.status_code == 422
        got = await connections.api.get(f"{API}/providers/{first}", headers=who.headers)
        assert got.json()["alias"] == "Renamed"


class TestDelete:
    async def test_delete_destroys_tokens_and_keeps_the_audit_trail(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.connect(who)
        assert len(await connections.sql("SELECT id FROM provider_tokens")) == 1

        response = await connections.api.delete(
            f"{API}/providers/{provider_id}", params={"purge": "true"}, headers=who.headers
        )

        assert response.status_code == 204
        assert await connections.sql("SELECT id FROM provider_tokens") == []
        assert await connections.sql("SELECT id FROM providers") == []
        gone = await connections.api.get(f"{API}/providers/{provider_id}", headers=who.headers)
        assert gone.status_code == 404
        trail = await connections.api.get(
            f"{API}/providers/{provider_id}/audit-logs", headers=who.headers
        )
        assert trail.status_code == 200
        actions = [row["action"] for row in trail.json()["items"]]
        assert actions[0] == "provider.deleted"
        assert "authorization.callback" in actions


class TestOtherUsersProvider:
    """Another user's provider answers 404 on every endpoint, and nothing changes."""

    @pytest.mark.parametrize(
        ("method", "suffix", "body"),
        [
            ("GET", "", None),
            ("PATCH", "", {"alias": "mine now"}),
            ("DELETE", "", None),
            ("GET", "/audit-logs", None),
            ("POST", "/authorization", None),
            ("GET", "/authorization", None),
            ("PATCH", "/authorization", None),
            ("DELETE", "/authorization", None),
        ],
    )
    async def test_answers_404(
        self, connections: Rig, method: str, suffix: str, body: dict[str, str] | None
    ) -> None:
        owner, intruder = await connections.login(), await connections.login()
        provider_id = await connections.connect(owner, "Owner's")
        before = await connections.sql("SELECT alias, status FROM providers")

        response = await connections.api.request(
            method, f"{API}/providers/{provider_id}{suffix}", json=body, headers=intruder.headers
        )

        assert response.status_code == 404
        assert await connections.sql("SELECT alias, status FROM providers") == before
        assert len(await connections.sql("SELECT id FROM provider_tokens")) == 1
        assert await connections.sql("SELECT id FROM oauth_states WHERE used_at IS NULL") == []

    async def test_random_id_is_404_and_bad_id_is_422(self, connections: Rig) -> None:
        who = await connections.login()

        missing = await connections.api.get(f"{API}/providers/{uuid.uuid4()}", headers=who.headers)
        malformed = await connections.api.get(f"{API}/providers/not-a-uuid", headers=who.headers)

        assert missing.status_code == 404
        assert missing.json()["code"] == "provider_not_found"
        assert malformed.status_code == 422
