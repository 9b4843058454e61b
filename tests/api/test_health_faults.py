"""`/health` under failure: Redis down → degraded (the rest still answers); database down →
503 within 2 s, and back to healthy by itself when the database returns."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
from fastapi import FastAPI

from dashtam.core.database import create_engine, create_session_factory
from dashtam.core.kv import RedisKeyValueStore
from dashtam.core.state import AppResources
from dashtam.main import create_app
from tests.support.tcp_proxy import TcpProxy


async def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://test")


class TestRedisDown:
    async def test_health_is_degraded_and_other_endpoints_answer(
        self, resources: AppResources
    ) -> None:
        dead = RedisKeyValueStore.from_url("redis://127.0.0.1:1/0", socket_timeout=0.3)
        broken = AppResources(
            settings=resources.settings,
            engine=resources.engine,
            session_factory=resources.session_factory,
            kv=dead,
            extras=dict(resources.extras),
        )
        app = create_app(resources.settings, resources=broken)
        try:
            async with app.router.lifespan_context(app), await _client(app) as client:
                response = await client.get("/health")
                assert response.status_code == 200
                body = response.json()
                assert body["status"] == "degraded"
                assert body["checks"]["redis"]["status"] == "down"
                assert body["checks"]["database"]["status"] == "ok"
                assert (await client.get("/health/live")).status_code == 200
        finally:
            await dead.close()


class TestDatabaseDown:
    async def test_503_fast_then_recovers_without_restart(
        self, resources: AppResources, tmp_path: Path
    ) -> None:
        settings = resources.settings
        if os.environ.get("TEST_DATABASE_URL"):
            proxy = TcpProxy("127.0.0.1", 5432)
            await proxy.start()
            url = settings.effective_database_url.replace(":5432/", f":{proxy.port}/")
        else:
            proxy = None
            url = f"sqlite+aiosqlite:///{(tmp_path / 'h.db').as_posix()}"
        engine = create_engine(url, settings)
        broken = AppResources(
            settings=settings,
            engine=engine,
            session_factory=create_session_factory(engine),
            kv=resources.kv,
        )
        app = create_app(settings, resources=broken)
        try:
            async with app.router.lifespan_context(app), await _client(app) as client:
                assert (await client.get("/health")).json()["status"] == "healthy"
                if proxy:
                    await proxy.stop()
                else:
                    (tmp_path / "h.db").rename(tmp_path / "h.moved")
                    (tmp_path / "h.db").mkdir()  # a directory cannot be opened as a database
                    await engine.dispose()
                started = time.monotonic()
                down = await client.get("/health")
                assert time.monotonic() - started < 2.0
                assert down.status_code == 503
                assert down.json()["status"] == "unhealthy"
                assert down.json()["checks"]["database"]["status"] == "down"
                if proxy:
                    await proxy.start()
                else:
                    (tmp_path / "h.db").rmdir()
                    (tmp_path / "h.moved").rename(tmp_path / "h.db")
                for _ in range(20):
                    response = await client.get("/health")
                    if response.status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                assert response.json()["status"] == "healthy"
        finally:
            await engine.dispose()
            if proxy:
                await proxy.stop()
