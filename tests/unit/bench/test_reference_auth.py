"""The `auth_me` reference app: verifies Dashtam's JWTs and reads the profile row."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from bench.reference.auth import create_app
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from dashtam.core.config import Settings, generate_secret_key
from dashtam.core.tokens import build_access_token_codec
from dashtam.core.types import utcnow
from dashtam.models.user import User


@pytest.fixture
def secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The reference reads its settings from the environment, like the harness passes them."""
    value = generate_secret_key()
    for name in ("DATABASE_URL", "JWT_ISSUER", "JWT_AUDIENCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECRET_KEY", value)
    monkeypatch.setenv("ENCRYPTION_KEYS", "t1:" + "A" * 43)
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    return value


def add_user(tmp_path: Path, *, active: bool = True) -> uuid.UUID:
    """A user row in the embedded database file, written through Dashtam's model types."""
    path = tmp_path / "var" / "dashtam.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}")
    User.__table__.create(engine, checkfirst=True)  # type: ignore[attr-defined]
    now = utcnow()
    user = User(
        email=f"{uuid.uuid4().hex[:8]}@example.com",
        name="Ref",
        password_hash="x",
        email_verified_at=now,
        is_active=active,
        created_at=now,
        updated_at=now,
    )
    with Session(engine) as session:
        session.add(user)
        session.commit()
        user_id = user.id
    engine.dispose()
    return user_id


@pytest.fixture
async def client(secret: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    add_user(tmp_path)  # the table must exist before the app opens the file
    app = create_app()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://ref") as c,
    ):
        yield c


def token_for(secret: str, user_id: uuid.UUID) -> str:
    codec = build_access_token_codec(Settings(secret_key=secret))
    token, _ = codec.encode(user_id=user_id, session_id=uuid.uuid4())
    return token


class TestReferenceMe:
    async def test_a_valid_token_reads_the_profile(
        self, client: httpx.AsyncClient, secret: str, tmp_path: Path
    ) -> None:
        user_id = add_user(tmp_path)
        response = await client.get(
            "/me", headers={"Authorization": f"Bearer {token_for(secret, user_id)}"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == str(user_id)
        assert body["name"] == "Ref"
        assert body["email_verified"] is True
        assert body["is_active"] is True
        assert body["last_login_at"] is None
        assert body["created_at"].endswith("Z")

    async def test_bad_missing_or_foreign_tokens_are_refused(
        self, client: httpx.AsyncClient, tmp_path: Path
    ) -> None:
        user_id = add_user(tmp_path)
        forged = token_for(generate_secret_key(), user_id)
        assert (await client.get("/me")).status_code == 401
        assert (await client.get("/me", headers={"Authorization": "Bearer x"})).status_code == 401
        response = await client.get("/me", headers={"Authorization": f"Bearer {forged}"})
        assert response.status_code == 401

    async def test_unknown_and_inactive_users_are_refused(
        self, client: httpx.AsyncClient, secret: str, tmp_path: Path
    ) -> None:
        inactive = add_user(tmp_path, active=False)
        for user_id in (inactive, uuid.uuid4()):
            headers = {"Authorization": f"Bearer {token_for(secret, user_id)}"}
            assert (await client.get("/me", headers=headers)).status_code == 401

    async def test_liveness_route(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/health/live")).json() == {"status": "ok"}
