"""Application settings: one `Settings` object read from the environment.

Embedded defaults make a fresh laptop work with zero setup (SQLite under `var/`, in-process
cache/queue, secrets generated once into `var/secrets.json`); production refuses to start while
a secret is missing or still a placeholder.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Environment = Literal["development", "test", "production"]

#: Substrings that mark a secret as an unedited template value.
_PLACEHOLDER_MARKERS = ("change-me", "changeme", "change_me", "your-", "placeholder", "example")
_MIN_SECRET_LENGTH = 32
_SECRETS_FILE = "secrets.json"


class ConfigurationError(RuntimeError):
    """Raised when the settings cannot be used to start the application."""


def _split_csv(value: object) -> object:
    """Accept comma-separated strings for list settings (env vars are not JSON)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


def generate_secret_key() -> str:
    """Return a fresh random secret suitable for `SECRET_KEY` (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def generate_encryption_key(key_id: str = "k1") -> str:
    """Return one `ENCRYPTION_KEYS` entry: `<key id>:<base64url 256-bit key>`."""
    raw = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return f"{key_id}:{raw}"


def looks_like_placeholder(value: str) -> bool:
    """Tell whether a secret is a template value or too short to be a real secret."""
    lowered = value.lower()
    return len(value) < _MIN_SECRET_LENGTH or any(m in lowered for m in _PLACEHOLDER_MARKERS)


class Settings(BaseSettings):
    """Every setting Dashtam reads. Names map to upper-case environment variables."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    # --- runtime -------------------------------------------------------------------------
    environment: Environment = "development"
    app_name: str = "Dashtam"
    var_dir: Path = Path("var")
    auto_migrate: bool | None = Field(
        default=None, description="Run migrations at start-up (default: on in development)."
    )

    # --- stores --------------------------------------------------------------------------
    database_url: str | None = None
    redis_url: str | None = None
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout: float = Field(default=5.0, gt=0)
    db_connect_timeout: float = Field(default=1.5, gt=0)
    db_echo: bool = False
    redis_max_connections: int = Field(default=50, ge=1)
    redis_pool_timeout: float = Field(default=2.0, gt=0)
    redis_socket_timeout: float = Field(default=1.0, gt=0)

    # --- secrets -------------------------------------------------------------------------
    secret_key: SecretStr | None = None
    encryption_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated `<id>:<base64url 32-byte key>`; the last one encrypts.",
    )

    # --- HTTP server ---------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    tls_enabled: bool = True
    certs_dir: Path = Path("certs")
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    cors_origins: CsvList = Field(default_factory=list)
    allowed_hosts: CsvList = Field(default_factory=lambda: ["127.0.0.1", "localhost", "::1"])
    trusted_proxies: CsvList = Field(default_factory=list)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    docs_enabled: bool = True
    health_timeout: float = Field(default=1.5, gt=0)

    # --- logging -------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    @field_validator("cors_origins", "allowed_hosts", "trusted_proxies", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fill_paths(self) -> Settings:
        if self.tls_cert_file is None:
            self.tls_cert_file = self.certs_dir / "server.pem"
        if self.tls_key_file is None:
            self.tls_key_file = self.certs_dir / "server-key.pem"
        if self.tls_ca_file is None:
            self.tls_ca_file = self.certs_dir / "ca.pem"
        return self

    # --- derived -------------------------------------------------------------------------
    @property
    def is_production(self) -> bool:
        """True when running with production safety rules."""
        return self.environment == "production"

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to the embedded SQLite file under `var/`."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.var_dir / 'dashtam.db').as_posix()}"

    @property
    def uses_sqlite(self) -> bool:
        """True when the relational store is SQLite."""
        return self.effective_database_url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        """Whether the API applies migrations itself at start-up."""
        if self.auto_migrate is not None:
            return self.auto_migrate
        return self.environment == "development"

    @cached_property
    def secret_key_bytes(self) -> bytes:
        """The server secret as bytes (call `ensure_secrets` first)."""
        if self.secret_key is None:
            raise ConfigurationError("SECRET_KEY is not set")
        return self.secret_key.get_secret_value().encode()

    def ensure_secrets(self) -> Settings:
        """Fill missing secrets (development/test) or refuse placeholders (production).

        Development and test: a missing `SECRET_KEY` / `ENCRYPTION_KEYS` is generated once into
        `var/secrets.json` (mode 0600) and reused on every later start, so tokens survive
        restarts. Production: a missing or placeholder value stops start-up with a message
        naming the variable.

        Returns:
            The same settings object, for chaining.

        Raises:
            ConfigurationError: In production when a secret is missing or a placeholder.
        """
        if self.is_production:
            self._refuse_weak_secrets()
            return self
        if self.secret_key is not None and self.encryption_keys is not None:
            return self
        stored = self._load_or_create_local_secrets()
        if self.secret_key is None:
            self.secret_key = SecretStr(stored["SECRET_KEY"])
        if self.encryption_keys is None:
            self.encryption_keys = SecretStr(stored["ENCRYPTION_KEYS"])
        return self

    def _refuse_weak_secrets(self) -> None:
        problems: list[str] = []
        for name, value in (
            ("SECRET_KEY", self.secret_key),
            ("ENCRYPTION_KEYS", self.encryption_keys),
        ):
            if value is None:
                problems.append(f"{name} is not set")
            elif name == "SECRET_KEY" and looks_like_placeholder(value.get_secret_value()):
                problems.append(f"{name} is a placeholder or shorter than {_MIN_SECRET_LENGTH}")
            elif name == "ENCRYPTION_KEYS" and any(
                m in value.get_secret_value().lower() for m in _PLACEHOLDER_MARKERS
            ):
                problems.append(f"{name} is a placeholder")
        if problems:
            raise ConfigurationError(
                "Refusing to start in production: "
                + "; ".join(problems)
                + ". Generate real values with `dashtam keys` and set them in the environment."
            )

    def _load_or_create_local_secrets(self) -> dict[str, str]:
        path = self.var_dir / _SECRETS_FILE
        if path.exists():
            data: dict[str, str] = json.loads(path.read_text())
            if "SECRET_KEY" in data and "ENCRYPTION_KEYS" in data:
                return data
        data = {"SECRET_KEY": generate_secret_key(), "ENCRYPTION_KEYS": generate_encryption_key()}
        self.var_dir.mkdir(parents=True, exist_ok=True)
        # Create with 0600 from the start so the secret is never world-readable, even briefly.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        return data


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (plus overrides) and make secrets usable.

    Args:
        **overrides: Field values that win over the environment (used by tests and the CLI).

    Returns:
        Settings with secrets filled in or validated.
    """
    settings = Settings(**overrides)  # type: ignore[arg-type]
    return settings.ensure_secrets()
