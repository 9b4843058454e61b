"""The sync endpoints over the real app: trigger, watch, list, 404s and 409s."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from dashtam.core.database import session_scope
from dashtam.core.kv import KeyValueStore
from dashtam.core.types import utcnow
from dashtam.jobs.tasks import JobQueue
from dashtam.main import create_app
from dashtam.models.provider import Provider
from tests.integration.sync.rig import SyncRig, sync_rig
from tests.support.factories import seed_login
from tests.support.financial_factories import create_provider

API = "/api/v1"


@asynccontextmanager
async def api(rig: SyncRig) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(rig.resources.settings, resources=rig.resources)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.10", 50000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="https://test") as client,
    ):
        yield client


async def set_status(rig: SyncRig, status: str) -> None:
    async with session_scope(rig.resources.session_factory) as session:
        await session.execute(
            update(Provider).where(Provider.id == rig.provider_id).values(status=status)  # type: ignore[arg-type]
        )


def live() -> dict[str, object]:
    return {"simulator_start_time": utcnow().replace(microsecond=0)}


class TestTriggerAndWatch:
    async def test_post_queues_a_run_that_the_in_process_worker_completes(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store, sim=live()) as rig, api(rig) as client:
            from taskiq import InMemoryBroker

            queue = JobQueue.create(rig.resources, InMemoryBroker())
            await queue.broker.startup()
            response = await client.post(
                f"{API}/providers/{rig.provider_id}/syncs", headers=rig.headers
            )
            assert response.status_code == 202, response.text
            body = response.json()
            assert body["status"] in ("queued", "running") and body["trigger"] == "manual"
            assert response.headers["location"] == f"{API}/syncs/{body['id']}"
            await queue.wait_idle()
            await queue.broker.shutdown()

            run = (await client.get(f"{API}/syncs/{body['id']}", headers=rig.headers)).json()
            truth = await rig.truth()
            assert run["status"] == "succeeded" and run["error"] is None
            assert run["provider_id"] == str(rig.provider_id)
            assert run["accounts"] == 2
            assert run["added"] == sum(count for count, _ in truth.values())
            assert run["started_at"] and run["finished_at"]

    async def test_second_post_while_queued_returns_the_same_run(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig, api(rig) as client:
            url = f"{API}/providers/{rig.provider_id}/syncs"
            first = await client.post(url, headers=rig.headers)
            second = await client.post(url, headers=rig.headers)
            assert first.status_code == second.status_code == 202
            assert first.json()["id"] == second.json()["id"]
            listed = (await client.get(url, headers=rig.headers)).json()
            assert [item["id"] for item in listed["items"]] == [first.json()["id"]]
            assert listed["has_more"] is False

    async def test_list_pages_newest_first_with_a_cursor(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig, api(rig) as client:
            ids = []
            for seconds in range(3):
                run_id = await rig.queue(now=utcnow() + timedelta(seconds=seconds))
                assert await rig.engine().run(run_id) is not None
                ids.append(str(run_id))
            url = f"{API}/providers/{rig.provider_id}/syncs"
            page = (await client.get(url, params={"limit": 2}, headers=rig.headers)).json()
            assert [i["id"] for i in page["items"]] == ids[::-1][:2]
            assert page["has_more"] and page["next_cursor"]
            rest = (
                await client.get(
                    url, params={"limit": 2, "cursor": page["next_cursor"]}, headers=rig.headers
                )
            ).json()
            assert [i["id"] for i in rest["items"]] == [ids[0]]
            assert rest["has_more"] is False and rest["next_cursor"] is None
            bad = await client.get(url, params={"cursor": "x.y"}, headers=rig.headers)
            assert bad.status_code == 422 and bad.json()["code"] == "invalid_cursor"


class TestRefusals:
    async def test_foreign_and_unknown_ids_are_404(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig, api(rig) as client:
            outcome = await rig.sync()
            other = await seed_login(rig.resources)
            for method, path in (
                ("POST", f"{API}/providers/{rig.provider_id}/syncs"),
                ("GET", f"{API}/providers/{rig.provider_id}/syncs"),
                ("GET", f"{API}/syncs/{outcome.run_id}"),
                ("GET", f"{API}/syncs/{uuid.uuid4()}"),
                ("POST", f"{API}/providers/{uuid.uuid4()}/syncs"),
            ):
                response = await client.request(method, path, headers=other.headers)
                assert response.status_code == 404, (method, path, response.text)
                assert response.headers["content-type"] == "application/problem+json"
            assert (
                await client.get(f"{API}/syncs/not-a-uuid", headers=rig.headers)
            ).status_code == 422
            assert (
                await client.post(f"{API}/providers/{rig.provider_id}/syncs")
            ).status_code == 401

    async def test_inactive_providers_answer_409_with_a_clear_code(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig, api(rig) as client:
            url = f"{API}/providers/{rig.provider_id}/syncs"
            for status, code in (
                ("reauth_required", "reauth_required"),
                ("pending", "provider_not_connected"),
                ("disconnected", "provider_not_connected"),
                ("error", "provider_in_error"),
            ):
                await set_status(rig, status)
                response = await client.post(url, headers=rig.headers)
                assert response.status_code == 409, response.text
                assert response.json()["code"] == code
            # A pending provider of the same user never gets a run either.
            async with session_scope(rig.resources.session_factory) as session:
                pending = await create_provider(session, user_id=rig.user_id, status="pending")
            response = await client.post(f"{API}/providers/{pending.id}/syncs", headers=rig.headers)
            assert response.json()["code"] == "provider_not_connected"
            listed = (await client.get(url, headers=rig.headers)).json()
            assert listed["items"] == []
