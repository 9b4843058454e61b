"""The whole account journey against a live `dashtam api` over HTTPS, tokens from the outbox."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from dashtam.core.kv import KeyValueStore
from tests.support.backends import worker_database_url, worker_redis_url
from tests.support.live import run_dashtam
from tests.support.mail import extract_token, read_outbox

pytestmark = pytest.mark.smoke

PASSWORD = "granite-meadow-41-beacon"
NEW_PASSWORD = "copper-lagoon-86-willow"
EMAIL = "journey.person@example.com"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {"ENVIRONMENT": "development", "LOG_FORMAT": "json"}
    if os.environ.get("TEST_DATABASE_URL"):
        env["DATABASE_URL"] = worker_database_url(tmp_path)
        env["AUTO_MIGRATE"] = "false"
    if worker_redis_url():
        env["REDIS_URL"] = worker_redis_url() or ""
    return env


def _newest_token(mail_dir: Path, kind: str, seen: int, timeout: float = 10.0) -> str:
    """Wait for a message beyond the `seen` first ones and pull its token."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = [m for m in read_outbox(mail_dir) if EMAIL in str(m["To"])]
        if len(messages) > seen:
            return extract_token(messages[-1], kind)
        time.sleep(0.05)
    raise AssertionError(f"no new {kind} email in {mail_dir}")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _login(http: httpx.Client, password: str) -> httpx.Response:
    return http.post("/api/v1/auth/login", json={"email": EMAIL, "password": password})


class TestAuthJourney:
    def test_register_verify_login_refresh_reset_logout(
        self,
        tmp_path: Path,
        engine: AsyncEngine,  # the PostgreSQL database migrated (and emptied afterwards)
        kv_store: KeyValueStore,  # Redis flushed afterwards
    ) -> None:
        mail_dir = tmp_path / "var" / "mail"
        with (
            run_dashtam("api", workdir=tmp_path, env=_env(tmp_path)) as live,
            live.client() as http,
        ):
            registered = http.post(
                "/api/v1/auth/register",
                json={"email": EMAIL, "password": PASSWORD, "name": "Journey Person"},
            )
            assert registered.status_code == 202
            verification = _newest_token(mail_dir, "verification", seen=0)

            assert _login(http, PASSWORD).status_code == 403
            verified = http.post("/api/v1/auth/verify-email", json={"token": verification})
            assert verified.status_code == 200

            first = _login(http, PASSWORD)
            assert first.status_code == 200
            pair = first.json()
            me = http.get("/api/v1/auth/me", headers=_bearer(pair["access_token"]))
            assert me.status_code == 200
            assert me.json()["email"] == EMAIL
            renamed = http.patch(
                "/api/v1/auth/me",
                headers=_bearer(pair["access_token"]),
                json={"name": "Renamed Person"},
            )
            assert renamed.json()["name"] == "Renamed Person"

            rotated = http.post(
                "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
            )
            assert rotated.status_code == 200
            new_pair = rotated.json()
            # Replaying the spent token kills the whole session: the new pair dies with it.
            replay = http.post(
                "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
            )
            assert replay.status_code == 401
            assert replay.json()["code"] == "invalid_refresh_token"
            assert (
                http.post(
                    "/api/v1/auth/refresh", json={"refresh_token": new_pair["refresh_token"]}
                ).status_code
                == 401
            )
            assert (
                http.get("/api/v1/auth/me", headers=_bearer(new_pair["access_token"])).status_code
                == 401
            )

            second = _login(http, PASSWORD).json()
            sessions = http.get("/api/v1/auth/sessions", headers=_bearer(second["access_token"]))
            assert sessions.status_code == 200
            current = [s for s in sessions.json()["items"] if s["is_current"]]
            assert len(current) == 1

            seen = len([m for m in read_outbox(mail_dir) if EMAIL in str(m["To"])])
            assert http.post("/api/v1/password-resets", json={"email": EMAIL}).status_code == 202
            reset = _newest_token(mail_dir, "password_reset", seen=seen)
            assert http.get(f"/api/v1/password-resets/{reset}").json()["valid"] is True
            done = http.patch(
                f"/api/v1/password-resets/{reset}", json={"new_password": NEW_PASSWORD}
            )
            assert done.status_code == 200

            assert (
                http.get("/api/v1/auth/me", headers=_bearer(second["access_token"])).status_code
                == 401
            )
            assert (
                http.post(
                    "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
                ).status_code
                == 401
            )
            assert _login(http, PASSWORD).status_code == 401

            third = _login(http, NEW_PASSWORD)
            assert third.status_code == 200
            token = third.json()["access_token"]
            assert http.post("/api/v1/auth/logout", headers=_bearer(token)).status_code == 204
            rejected = http.get("/api/v1/auth/me", headers=_bearer(token))
            assert rejected.status_code == 401
            assert rejected.headers["WWW-Authenticate"] == "Bearer"
            assert PASSWORD not in live.logs()
            assert NEW_PASSWORD not in live.logs()
            assert pair["refresh_token"] not in live.logs()
