"""What the provider endpoints cost the database: statements, transactions, re-reads.

Counting statements (not timing them) keeps these checks deterministic: a refresh reads the
connection once under its lock and writes tokens and audit row in one unit of work; a callback
claims the state, then stores everything (tokens, status, audit, first sync) in one unit of
work. Only statements on the connections tables count, so the authentication path (someone
else's concern) can change without breaking these.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlmodel import col

from dashtam.core.state import statement_scope
from dashtam.core.types import utcnow
from dashtam.models.provider import OAuthState, Provider, ProviderToken
from dashtam.services.connections import repository as repo
from dashtam.services.connections import token_statements
from dashtam.services.connections.audit import AuditAction, audit_values
from dashtam.services.sync import runs
from tests.integration.connections.harness import API, Rig

#: Tables whose statements these tests count.
_OURS = re.compile(r"\b(providers|provider_tokens|provider_audit_logs|oauth_states|sync_runs)\b")
_VERB = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|SAVEPOINT|RELEASE|WITH)", re.IGNORECASE)
_TARGET = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+(\w+)", re.IGNORECASE)


def _label(statement: str) -> str | None:
    """`VERB table` for a statement on our tables (`SAVEPOINT` / `RELEASE` bare), else None."""
    verb = _VERB.match(statement)
    if verb is None:
        return None
    name = verb.group(1).upper()
    if name in ("SAVEPOINT", "RELEASE"):
        return name
    if name == "WITH":
        # One statement doing several writes: name each (`WITH UPDATE a + INSERT b`).
        writes = re.findall(r"\b(UPDATE|INSERT INTO)\s+(\w+)", statement, re.IGNORECASE)
        return "WITH " + " + ".join(f"{verb.split()[0].upper()} {table}" for verb, table in writes)
    if not _OURS.search(statement):
        return None
    target = _TARGET.search(statement)
    return f"{name} {target.group(1) if target else '?'}"


class _ObservedDriver:
    """An asyncpg connection whose queries are labelled as they run."""

    def __init__(self, driver: Any, note: Any) -> None:
        self._driver, self._note = driver, note

    async def fetch(self, sql: str, *args: Any) -> Any:
        self._note(sql)
        return await self._driver.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self._note(sql)
        return await self._driver.fetchrow(sql, *args)


@contextmanager
def recording(rig: Rig) -> Iterator[list[str]]:
    """Collect `VERB table` for every statement on the connections tables while inside.

    Both paths are watched: SQLAlchemy's execution (its cursor event) and the token hot path's
    statements on the driver itself (PostgreSQL), which never pass through that event.
    """
    labels: list[str] = []
    engine = rig.resources.engine.sync_engine

    def note(statement: str) -> None:
        label = _label(statement)
        if label is not None:
            labels.append(label)

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        note(statement)

    original = token_statements.asyncpg_connection

    @asynccontextmanager
    async def observed(engine: Any) -> AsyncIterator[Any]:
        async with original(engine) as driver:
            yield _ObservedDriver(driver, note)

    event.listen(engine, "before_cursor_execute", on_execute)
    token_statements.asyncpg_connection = observed  # type: ignore[assignment]
    try:
        yield labels
    finally:
        token_statements.asyncpg_connection = original  # type: ignore[assignment]
        event.remove(engine, "before_cursor_execute", on_execute)


class TestRefreshNow:
    async def test_reads_once_and_writes_tokens_and_audit_together(
        self, connections: Rig, backend_name: str
    ) -> None:
        who = await connections.login()
        provider_id = await connections.connect(who)

        with recording(connections) as statements:
            response = await connections.api.patch(
                f"{API}/providers/{provider_id}/authorization", headers=who.headers
            )

        assert response.status_code == 200, response.text
        # Ownership, status and tokens in one read under the lock; then the compare-and-swap
        # with its audit row: one statement on PostgreSQL, one unit of work on SQLite.
        writes = (
            ["WITH UPDATE provider_tokens + INSERT provider_audit_logs"]
            if backend_name == "postgresql"
            else ["UPDATE provider_tokens", "INSERT provider_audit_logs"]
        )
        assert statements == ["SELECT providers", *writes]

    async def test_answer_is_what_is_stored(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.connect(who)

        refreshed = await connections.api.patch(
            f"{API}/providers/{provider_id}/authorization", headers=who.headers
        )

        assert refreshed.status_code == 200
        assert refreshed.json() == await connections.status(who, provider_id)

    async def test_a_burst_in_a_row_refreshes_once(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.connect(who)
        path = f"{API}/providers/{provider_id}/authorization"

        first = await connections.api.patch(path, headers=who.headers)
        with recording(connections) as statements:
            second = await connections.api.patch(path, headers=who.headers)

        assert first.json() == second.json()
        assert second.json()["refresh_count"] == 1
        assert statements == ["SELECT providers"]
        assert (await connections.token_grants())["refresh_token"] == 1


class TestCallback:
    async def test_one_claim_then_one_unit_of_work(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.create_provider(who)
        started = await connections.start(who, provider_id)
        code, state = await connections.institution_login(started["authorization_url"])

        with recording(connections) as statements:
            response = await connections.callback(provider_id, code=code, state=state)

        assert response.status_code == 200, response.text
        assert statements == [
            "UPDATE oauth_states",  # the single-use claim
            "SELECT providers",
            # exchange upstream, then one unit of work:
            "SELECT provider_tokens",  # lock the token row (none yet on a first connect)
            "UPDATE providers",  # active; no row means deleted meanwhile
            "INSERT provider_tokens",
            "INSERT provider_audit_logs",
            "SAVEPOINT",
            "INSERT sync_runs",
            "SELECT sync_runs",
            "RELEASE",
        ]
        queued = await connections.sql("SELECT trigger, status FROM sync_runs")
        assert queued == [{"trigger": "connect", "status": "queued"}]

    async def test_reauthorizing_rewrites_the_same_token_row(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.connect(who)
        (before,) = await connections.sql("SELECT id, access_token_encrypted FROM provider_tokens")

        await connections.reauthorize(who, provider_id)

        (after,) = await connections.sql("SELECT id, access_token_encrypted FROM provider_tokens")
        assert after["id"] == before["id"]
        assert after["access_token_encrypted"] != before["access_token_encrypted"]
        assert (await connections.status(who, provider_id))["status"] == "active"

    async def test_a_failure_to_queue_the_first_sync_still_connects(
        self, connections: Rig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def broken(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError("queue down")

        monkeypatch.setattr(runs, "create_or_get_active", broken)
        who = await connections.login()
        provider_id = await connections.create_provider(who)
        started = await connections.start(who, provider_id)
        code, state = await connections.institution_login(started["authorization_url"])

        response = await connections.callback(provider_id, code=code, state=state)

        assert response.status_code == 200, response.text
        assert (await connections.status(who, provider_id))["status"] == "active"
        assert len(await connections.sql("SELECT id FROM provider_tokens")) == 1
        assert await connections.sql("SELECT id FROM sync_runs") == []


class TestStart:
    async def test_stale_states_are_purged_at_most_once_per_interval(
        self, connections: Rig
    ) -> None:
        who = await connections.login()
        provider_id = await connections.create_provider(who)
        await connections.start(who, provider_id)
        long_ago = utcnow() - timedelta(days=2)
        async with connections.resources.engine.begin() as conn:
            await conn.execute(update(OAuthState).values(expires_at=long_ago))

        with recording(connections) as statements:
            await connections.start(who, provider_id)

        # The first start of this process already purged: this one only inserts.
        assert "DELETE oauth_states" not in statements
        connections.resources.extras.pop("oauth_states_purged_at")
        await connections.start(who, provider_id)
        live = await connections.sql("SELECT expires_at FROM oauth_states")
        assert len(live) == 2  # the stale one is gone, the two recent ones stay


class TestSwapWithAudit:
    """The refresh write: everything or nothing, on both backends."""

    async def test_rotation_writes_both_audit_rows(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = await connections.connect(who)
        await connections.refresh_mode("rotate")

        response = await connections.api.patch(
            f"{API}/providers/{provider_id}/authorization", headers=who.headers
        )

        assert response.status_code == 200, response.text
        rows = await connections.sql(
            "SELECT action, ip_address, request_id FROM provider_audit_logs "
            "WHERE action LIKE 'token.%' ORDER BY action"
        )
        assert [row["action"] for row in rows] == ["token.refreshed", "token.rotated"]
        assert {row["ip_address"] for row in rows} == {"203.0.113.10"}
        assert {row["request_id"] for row in rows} == {response.headers["x-request-id"]}

    async def test_a_lost_race_writes_nothing(self, connections: Rig, backend_name: str) -> None:
        who = await connections.login()
        provider_id = uuid.UUID(await connections.connect(who))
        async with connections.resources.engine.begin() as conn:
            await conn.execute(
                update(Provider).where(col(Provider.id) == provider_id).values(status="error")
            )
            token_id = (await conn.execute(select(col(ProviderToken.id)))).scalar_one()
        audit = audit_values(
            provider_id=provider_id, user_id=who.user.id, action=AuditAction.TOKEN_REFRESHED
        )

        swap: dict[str, Any] = {
            "row_id": token_id,
            "expected_access_ciphertext": "v1.t1.not-what-is-stored",
            "values": {"refresh_count": 99, "updated_at": utcnow()},
            "audit_rows": [audit],
            "activate": (provider_id, utcnow()),
        }
        if backend_name == "postgresql":
            engine = connections.resources.engine
            swapped = await token_statements.swap_tokens_with_audit_direct(engine, **swap)
        else:
            async with statement_scope(connections.resources) as session:
                swapped = await repo.swap_tokens_with_audit(session, **swap)

        assert swapped is False
        assert (
            await connections.sql(
                "SELECT id FROM provider_audit_logs WHERE action = 'token.refreshed'"
            )
            == []
        )
        assert await connections.sql("SELECT refresh_count FROM provider_tokens") == [
            {"refresh_count": 0}
        ]
        assert await connections.sql("SELECT status FROM providers") == [{"status": "error"}]
