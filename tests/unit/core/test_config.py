"""Settings: embedded defaults, generated development secrets, production refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dashtam.core.config import ConfigurationError, Settings, looks_like_placeholder


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(var_dir=tmp_path / "var", **values)  # type: ignore[arg-type]


class TestEmbeddedDefaults:
    def test_no_database_url_means_sqlite_under_var(self, tmp_path: Path) -> None:
        settings = _settings(tmp_path)
        assert settings.effective_database_url == (
            f"sqlite+aiosqlite:///{(tmp_path / 'var' / 'dashtam.db').as_posix()}"
        )
        assert settings.uses_sqlite

    def test_database_url_wins(self, tmp_path: Path) -> None:
        url = "postgresql+asyncpg://u@h/db"
        settings = _settings(tmp_path, database_url=url)
        assert settings.effective_database_url == url
        assert not settings.uses_sqlite

    def test_lists_accept_comma_separated_environment_values(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
        monkeypatch.setenv("ALLOWED_HOSTS", "api.example")
        settings = _settings(tmp_path)
        assert settings.cors_origins == ["https://a.example", "https://b.example"]
        assert settings.allowed_hosts == ["api.example"]

    def test_tls_paths_default_into_certs_dir(self, tmp_path: Path) -> None:
        settings = _settings(tmp_path, certs_dir=tmp_path / "c")
        assert settings.tls_cert_file == tmp_path / "c" / "server.pem"
        assert settings.tls_ca_file == tmp_path / "c" / "ca.pem"

    def test_auto_migrate_only_in_development_by_default(self, tmp_path: Path) -> None:
        assert _settings(tmp_path).should_auto_migrate
        assert not _settings(tmp_path, environment="production").should_auto_migrate
        assert _settings(tmp_path, environment="test", auto_migrate=True).should_auto_migrate


class TestDevelopmentSecrets:
    def test_missing_secrets_are_generated_once_with_mode_0600(self, tmp_path: Path) -> None:
        first = _settings(tmp_path).ensure_secrets()
        path = tmp_path / "var" / "secrets.json"
        assert path.stat().st_mode & 0o777 == 0o600
        second = _settings(tmp_path).ensure_secrets()
        assert first.secret_key is not None and second.secret_key is not None
        assert first.secret_key.get_secret_value() == second.secret_key.get_secret_value()
        stored = json.loads(path.read_text())
        assert stored["ENCRYPTION_KEYS"].startswith("k1:")

    def test_explicit_secrets_are_kept(self, tmp_path: Path) -> None:
        settings = _settings(
            tmp_path, secret_key="x" * 40, encryption_keys="k9:abc"
        ).ensure_secrets()
        assert settings.secret_key is not None
        assert settings.secret_key.get_secret_value() == "x" * 40
        assert not (tmp_path / "var" / "secrets.json").exists()

    def test_secret_never_appears_in_repr(self, tmp_path: Path) -> None:
        settings = _settings(tmp_path, secret_key="super-secret-value-1234567890-abcdef")
        assert "super-secret-value" not in repr(settings)


class TestProductionRefusal:
    def test_missing_secrets_stop_startup(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="SECRET_KEY is not set"):
            _settings(tmp_path, environment="production").ensure_secrets()

    def test_placeholder_secret_key_stops_startup(self, tmp_path: Path) -> None:
        settings = _settings(
            tmp_path,
            environment="production",
            secret_key="change-me-in-production-please-0123456789",
            encryption_keys="k1:" + "A" * 43,
        )
        with pytest.raises(ConfigurationError, match="SECRET_KEY is a placeholder"):
            settings.ensure_secrets()

    def test_real_secrets_are_accepted(self, tmp_path: Path) -> None:
        settings = _settings(
            tmp_path,
            environment="production",
            secret_key="Q2xr9f0vJw3nY8pL1sK6dT4mB7hC5gZa",
            encryption_keys="k1:" + "A" * 43,
        )
        assert settings.ensure_secrets() is settings
        assert not (tmp_path / "var").exists()

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("short", True),
            ("change-me-0123456789012345678901234567", True),
            ("your-secret-key-here-0123456789012345", True),
            ("Q2xr9f0vJw3nY8pL1sK6dT4mB7hC5gZa", False),
        ],
    )
    def test_placeholder_detection(self, value: str, expected: bool) -> None:
        assert looks_like_placeholder(value) is expected
