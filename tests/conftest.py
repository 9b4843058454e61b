"""Shared fixtures: settings, a migrated database per worker, the KV store, the app and a client.

Every test runs on the embedded backends by default; with `TEST_DATABASE_URL` /
`TEST_REDIS_URL` set (CI) the same tests run on PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlmodel import SQLModel

import dashtam.models  # noqa: F401  (every table on the metadata)
from dashtam.core.config import Settings, generate_encryption_key, generate_secret_key
from dashtam.core.database import create_engine, session_scope
from dashtam.core.kv import KeyValueStore, create_kv_store
from dashtam.core.migrations import upgrade_to_head
from dashtam.core.state import AppResources
from dashtam.main import assemble_resources, create_app
from tests.support.backends import (
    recreate_postgres_database,
    truncate_all,
    worker_database_url,
    worker_redis_url,
)

_TMP_ROOT = Path(tempfile.mkdtemp(prefix="dashtam-tests-"))
_SECRET_KEY = generate_secret_key()
_ENCRYPTION_KEYS = generate_encryption_key("t1")


@pytest.fixture(scope="session")
def tmp_root() -> Path:
    """A private directory for this test session (var/, mail outbox, SQLite files)."""
    return _TMP_ROOT


def make_settings(tmp_root: Path, **overrides: object) -> Settings:
    """Settings for tests: test environment, this worker's stores, fixed secrets, no TLS."""
    values: dict[str, object] = {
        "environment": "test",
        "database_url": worker_database_url(tmp_root),
        "redis_url": worker_redis_url(),
        "secret_key": _SECRET_KEY,
        "encryption_keys": _ENCRYPTION_KEYS,
        "var_dir": tmp_root / "var",
        "certs_dir": tmp_root / "certs",
        "auto_migrate": False,
        "log_level": "WARNING",
        "allowed_hosts": ["test", "testserver", "127.0.0.1", "localhost"],
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def settings(tmp_root: Path) -> Settings:
    """The settings every test shares (override per test with `make_settings`)."""
    return make_settings(tmp_root).ensure_secrets()


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """This worker's database, created fresh and migrated once with the real Alembic chain."""
    url = settings.effective_database_url
    if url.startswith("postgresql"):
        await recreate_postgres_database(url)
    else:
        Path(url.split("///", 1)[1]).unlink(missing_ok=True)
    await asyncio.to_thread(upgrade_to_head, url)
    engine = create_engine(url, settings)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def kv_store(settings: Settings) -> AsyncIterator[KeyValueStore]:
    """The KV store of this worker (Redis database or in-process)."""
    store = create_kv_store(settings.redis_url)
    yield store
    await store.close()


@pytest.fixture(autouse=True)
async def _isolate(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Empty the tables and the KV store after each test that touched them."""
    yield
    if "engine" in request.fixturenames:
        engine: AsyncEngine = request.getfixturevalue("engine")
        tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
        await truncate_all(engine, tables)
    if "kv_store" in request.fixturenames:
        store: KeyValueStore = request.getfixturevalue("kv_store")
        client = getattr(store, "client", None)
        if client is not None:
            await client.flushdb()
        elif hasattr(store, "_data"):
            await store.close()


@pytest.fixture
async def resources(
    settings: Settings, engine: AsyncEngine, kv_store: KeyValueStore
) -> AsyncIterator[AppResources]:
    """Every application service, built over the shared engine and KV store."""
    built = assemble_resources(settings, engine, kv_store)
    yield built
    await built.close_services()


@pytest.fixture
async def session(resources: AppResources) -> AsyncIterator[AsyncSession]:
    """A unit-of-work session (commits at the end of the test unless it raised)."""
    async with session_scope(resources.session_factory) as db_session:
        yield db_session


@pytest.fixture
async def app(resources: AppResources) -> AsyncIterator[FastAPI]:
    """The real application (all middleware and handlers) over the test resources."""
    application = create_app(resources.settings, resources=resources)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client speaking to the ASGI app in-process."""
    transport = httpx.ASGITransport(app=app, client=("203.0.113.10", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="https://test") as http:
        yield http


@pytest.fixture(scope="session")
def backend_name() -> str:
    """`postgresql` or `sqlite`: for the rare test that must know."""
    return "postgresql" if os.environ.get("TEST_DATABASE_URL") else "sqlite"


@pytest.fixture(scope="session", autouse=True)
def _no_stray_env(monkeypatch_session: pytest.MonkeyPatch) -> None:
    """Keep a developer's own environment from leaking into tests."""
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ENCRYPTION_KEYS", "ENVIRONMENT"):
        monkeypatch_session.delenv(name, raising=False)


@pytest.fixture(scope="session")
def monkeypatch_session() -> Iterator[pytest.MonkeyPatch]:
    """A session-wide monkeypatch."""
    patcher = pytest.MonkeyPatch()
    yield patcher
    patcher.undo()
