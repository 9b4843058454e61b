"""`dashtam api` as a real process: HTTPS with the generated CA, health, docs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.backends import worker_database_url, worker_redis_url
from tests.support.live import run_dashtam

pytestmark = pytest.mark.smoke


@pytest.fixture
def live_env(engine: AsyncEngine, tmp_path: Path) -> dict[str, str]:
    """Environment for a live API on this worker's (migrated) stores."""
    env = {"ENVIRONMENT": "development", "LOG_FORMAT": "json"}
    if os.environ.get("TEST_DATABASE_URL"):
        env["DATABASE_URL"] = worker_database_url(tmp_path)
        env["AUTO_MIGRATE"] = "false"
    if worker_redis_url():
        env["REDIS_URL"] = worker_redis_url() or ""
    return env


class TestApiProcess:
    def test_serves_health_over_https_trusting_the_ca(
        self, tmp_path: Path, live_env: dict[str, str]
    ) -> None:
        with run_dashtam("api", workdir=tmp_path, env=live_env) as live:
            with live.client() as client:
                response = client.get("/health")
                assert response.status_code == 200
                assert response.json()["status"] == "healthy"
                assert client.get("/docs").status_code == 200
                assert client.get("/openapi.json").json()["info"]["title"] == "Dashtam API"
            # Without trusting our CA, verification must fail: TLS is real.
            with pytest.raises(httpx.ConnectError):
                httpx.get(live.base_url + "/health/live")

    def test_secrets_are_generated_once_with_private_mode(
        self, tmp_path: Path, live_env: dict[str, str]
    ) -> None:
        with run_dashtam("api", workdir=tmp_path, env=live_env):
            pass
        secrets_file = tmp_path / "var" / "secrets.json"
        assert secrets_file.stat().st_mode & 0o777 == 0o600
        first = secrets_file.read_text()
        with run_dashtam("api", workdir=tmp_path, env=live_env):
            pass
        assert secrets_file.read_text() == first


class TestProductionRefusesPlaceholders:
    def test_placeholder_secret_key_stops_startup(self, tmp_path: Path) -> None:
        env = {
            **os.environ,
            "ENVIRONMENT": "production",
            "SECRET_KEY": "change-me-in-production",
            "ENCRYPTION_KEYS": "k1:" + "A" * 43,
            "VAR_DIR": str(tmp_path / "var"),
        }
        result = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "dashtam", "api", "--port", "1"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2
        assert "SECRET_KEY" in result.stderr
        assert "placeholder" in result.stderr
