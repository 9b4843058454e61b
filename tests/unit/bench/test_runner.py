"""The environment each server process gets."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.runner import RunConfig

from tests.unit.bench.support import run_config


def config(tmp_path: Path) -> RunConfig:
    return run_config(tmp_path)


class TestServerEnv:
    def test_quiet_fresh_secrets_given_stores_and_no_leaked_settings(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DATABASE_URL", "postgresql://someone/real")
        monkeypatch.setenv("SECRET_KEY", "the-developers-own-secret")
        monkeypatch.setenv("LOG_LEVEL", "DEBUG")
        env = config(tmp_path).server_env({"VAR_DIR": "/v"}, {})
        assert "DATABASE_URL" not in env
        assert env["SECRET_KEY"] == "fresh-secret"
        assert env["ENCRYPTION_KEYS"] == "bench:key"
        assert env["VAR_DIR"] == "/v"
        assert env["LOG_LEVEL"] == "WARNING"
        assert env["DOCS_ENABLED"] == "false"
        assert env["AUTO_MIGRATE"] == "false"
        assert env["ENVIRONMENT"] == "development"
        assert env["CERTS_DIR"] == str((tmp_path / "certs").resolve())
        assert "PATH" in env

    def test_scenario_env_wins(self, tmp_path: Path) -> None:
        env = config(tmp_path).server_env({}, {"LOG_LEVEL": "ERROR", "RATE_LIMIT": "off"})
        assert env["LOG_LEVEL"] == "ERROR"
        assert env["RATE_LIMIT"] == "off"
