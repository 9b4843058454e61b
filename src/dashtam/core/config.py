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
from datetime import UTC, datetime
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
    # Overflow connections are closed as soon as they are returned to a full pool: under a
    # steady load above the pool size that is a new connection per checkout (measured: the
    # tail latency of authenticated reads went from 120 ms to 2 s). Keep the connections.
    db_pool_size: int = Field(default=20, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)
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
    tls_extra_hosts: CsvList = Field(
        default_factory=list,
        description="Extra names/IPs for the generated server certificate (e.g. compose services).",
    )
    cors_origins: CsvList = Field(default_factory=list)
    allowed_hosts: CsvList = Field(default_factory=lambda: ["127.0.0.1", "localhost", "::1"])
    trusted_proxies: CsvList = Field(default_factory=list)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    docs_enabled: bool = True
    health_timeout: float = Field(default=1.5, gt=0)

    # --- logging -------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    # --- metrics (`GET /metrics`) --------------------------------------------------------
    metrics_enabled: bool = Field(default=True, description="Serve Prometheus `/metrics`.")
    metrics_allowed_ips: CsvList = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="IPs/CIDRs that may read /metrics (empty: token only, if one is set).",
    )
    metrics_bearer_token: SecretStr | None = Field(
        default=None, description="When set, /metrics requires `Authorization: Bearer <it>`."
    )

    # --- auth ----------------------------------------------------------------------------
    access_token_ttl_minutes: int = Field(default=30, ge=1, le=24 * 60)
    refresh_token_ttl_days: int = Field(default=30, ge=1, le=365)
    jwt_issuer: str = "dashtam"
    jwt_audience: str = "dashtam-api"
    verification_token_ttl_hours: int = Field(default=24, ge=1)
    reset_token_ttl_minutes: int = Field(default=60, ge=5)
    session_cache_ttl_seconds: float = Field(
        default=30,
        gt=0,
        le=300,
        description="How long a session's active/revoked state is cached in the KV store.",
    )

    # --- rate limiting -------------------------------------------------------------------
    rate_limit_enabled: bool = True
    rate_limit_login: str = "10/minute"
    rate_limit_register: str = "5/minute"
    rate_limit_resend: str = "5/minute"
    rate_limit_reset: str = "5/minute"
    rate_limit_user: str = "600/minute"
    login_lockout_threshold: int = Field(default=10, ge=1)
    login_lockout_window_minutes: int = Field(default=15, ge=1)
    login_lockout_minutes: int = Field(default=15, ge=1)

    # --- email ---------------------------------------------------------------------------
    email_backend: Literal["console", "file", "smtp", "ses"] | None = Field(
        default=None, description="Default: `file` in development/test, `console` in production."
    )
    email_from: str = "Dashtam <no-reply@localhost>"
    email_link_base_url: str = "https://127.0.0.1:8000"
    mail_dir: Path | None = Field(default=None, description="`.eml` outbox (default var/mail).")
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_timeout: float = Field(default=10.0, gt=0)
    aws_region: str | None = None
    ses_configuration_set: str | None = None

    # --- providers -----------------------------------------------------------------------
    schwab_app_key: SecretStr | None = Field(default=None, description="Schwab App Key.")
    schwab_app_secret: SecretStr | None = Field(default=None, description="Schwab App Secret.")
    schwab_redirect_uri: str = Field(
        default="https://127.0.0.1:8182",
        description="Callback URL registered with Schwab; sent byte-for-byte at both steps.",
    )
    schwab_auth_base_url: str = "https://api.schwabapi.com/v1/oauth"
    schwab_api_base_url: str = "https://api.schwabapi.com/trader/v1"
    schwab_requests_per_minute: int = Field(default=120, ge=1)
    provider_ca_file: Path | None = Field(
        default=None,
        description="Extra CA to trust for provider calls (the local simulator); default: system.",
    )
    provider_connect_timeout: float = Field(default=10.0, gt=0)
    provider_timeout: float = Field(default=30.0, gt=0, description="Whole-attempt limit (s).")
    provider_max_attempts: int = Field(default=4, ge=1, le=10)
    provider_retry_after_max: float = Field(
        default=30.0, ge=0, description="Longest Retry-After we wait out before giving up (s)."
    )
    provider_budget_max_wait: float = Field(
        default=90.0, ge=0, description="Longest wait for the per-provider request budget (s)."
    )

    # --- institution connections ---------------------------------------------------------
    oauth_state_ttl_minutes: int = Field(
        default=10, ge=1, le=60, description="How long an authorization `state` stays usable."
    )
    token_refresh_margin_seconds: int = Field(
        default=300, ge=0, le=3600, description="Refresh access tokens this long before expiry."
    )
    rate_limit_provider_authorization: str = Field(
        default="20/hour", description="Authorization starts per user (`POST .../authorization`)."
    )

    # --- sync engine, background jobs and scheduler ---------------------------------------
    sync_initial_history_days: int = Field(
        default=730, ge=1, le=36_500, description="How far back the first sync of an account goes."
    )
    sync_overlap_days: int = Field(
        default=30,
        ge=0,
        le=365,
        description="Incremental syncs re-fetch this many days before the last sync.",
    )
    sync_interval_minutes: int = Field(
        default=360, ge=5, description="Scheduled sync period of every active connection."
    )
    sync_interval_jitter: float = Field(
        default=0.1, ge=0, le=0.5, description="± fraction of the interval, to spread syncs."
    )
    sync_lease_seconds: int = Field(
        default=120, ge=10, description="A running sync renews its lease; expired = presumed dead."
    )
    sync_max_attempts: int = Field(
        default=3, ge=1, le=20, description="Claims of one run before it is abandoned as failed."
    )
    sync_retry_base_seconds: int = Field(
        default=300, ge=1, description="First retry delay after a failed sync (doubles, capped)."
    )
    sync_queued_stale_seconds: int = Field(
        default=300, ge=10, description="A queued run untouched this long is dispatched again."
    )
    sync_requests_estimate: int = Field(
        default=8, ge=1, description="Upstream requests one scheduled sync is budgeted at."
    )
    scheduler_enabled: bool = Field(
        default=True, description="Run the scheduler (in the API when embedded, else in workers)."
    )
    scheduler_tick_seconds: int = Field(
        default=60, ge=1, le=3600, description="How often the scheduler looks for due work."
    )
    worker_concurrency: int = Field(default=4, ge=1, le=256, description="Jobs per worker.")
    job_redelivery_idle_seconds: int = Field(
        default=600,
        ge=10,
        description="Redis: an unacknowledged job is redelivered after this long (a dead worker).",
    )
    reauth_warning_hours: int = Field(
        default=24, ge=1, le=24 * 6, description="Warn this long before the refresh-token wall."
    )

    # --- OAuth callback server (`dashtam callback`) ---------------------------------------
    callback_host: str = "127.0.0.1"
    callback_port: int = Field(default=8182, ge=1, le=65535)
    callback_api_base_url: str = Field(
        default="https://127.0.0.1:8000",
        description="Where the callback server reaches the API (trusting TLS_CA_FILE).",
    )

    # --- simulator (the Schwab-compatible institution, `dashtam simulator`) ---------------
    simulator_host: str = "127.0.0.1"
    simulator_port: int = Field(default=8443, ge=1, le=65535)
    simulator_client_id: str | None = Field(
        default=None, description="Registered app key; random per start when unset."
    )
    simulator_client_secret: SecretStr | None = Field(
        default=None, description="Registered app secret; random per start when unset."
    )
    simulator_redirect_uris: CsvList = Field(
        default_factory=lambda: ["https://127.0.0.1:8182"],
        description="Comma-separated callback URLs; matched exactly.",
    )
    simulator_refresh_mode: Literal["same", "rotate", "omit"] = Field(
        default="same", description="What a refresh grant returns as `refresh_token`."
    )
    simulator_start_time: datetime | None = Field(
        default=None, description="Initial simulator clock (ISO 8601); default: real now."
    )
    simulator_clock_running: bool = Field(
        default=False, description="Let the clock also follow real time (it always obeys advances)."
    )
    simulator_control_token: SecretStr | None = Field(
        default=None, description="When set, /control requires it in `X-Control-Token`."
    )
    simulator_rate_limit: int = Field(default=120, ge=1, description="Trader calls per minute.")
    simulator_seed: int = Field(default=20240229, description="Seed of the generated data.")
    simulator_whale_years: int = Field(default=6, ge=1, le=20)
    simulator_transaction_detail_shape: Literal["array", "object"] = Field(
        default="array", description="Body of GET .../transactions/{id}: spec array or object."
    )
    simulator_cancelled_transactions: Literal["hide", "invalid"] = Field(
        default="hide", description="Cancelled rows vanish from listings or show as INVALID."
    )

    @field_validator("simulator_redirect_uris", mode="before")
    @classmethod
    def _simulator_csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("simulator_start_time")
    @classmethod
    def _simulator_utc(cls, value: datetime | None) -> datetime | None:
        # A naive start time would make every token expiry and data cut-off ambiguous.
        if value is not None and value.tzinfo is None:
            raise ValueError("SIMULATOR_START_TIME needs a UTC offset, e.g. 2025-06-16T12:00:00Z")
        return value.astimezone(UTC) if value is not None else None

    @field_validator(
        "cors_origins", "allowed_hosts", "trusted_proxies", "tls_extra_hosts", mode="before"
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "rate_limit_login",
        "rate_limit_register",
        "rate_limit_resend",
        "rate_limit_reset",
        "rate_limit_user",
        "rate_limit_provider_authorization",
    )
    @classmethod
    def _rate_limit_rule(cls, value: str) -> str:
        # Fail at start-up, not on the first request that hits a mistyped rule.
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit rule like '10/minute': {value!r}") from exc
        return value

    @field_validator("metrics_allowed_ips", mode="before")
    @classmethod
    def _metrics_csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("trusted_proxies", "metrics_allowed_ips")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"not an IP address or CIDR: {entry!r}") from exc
        return value

    @model_validator(mode="after")
    def _fill_paths(self) -> Settings:
        if self.tls_cert_file is None:
            self.tls_cert_file = self.certs_dir / "server.pem"
        if self.tls_key_file is None:
            self.tls_key_file = self.certs_dir / "server-key.pem"
        if self.tls_ca_file is None:
            self.tls_ca_file = self.certs_dir / "ca.pem"
        if self.mail_dir is None:
            self.mail_dir = self.var_dir / "mail"
        return self

    # --- derived -------------------------------------------------------------------------
    @property
    def certificate_hosts(self) -> tuple[str, ...]:
        """Every name the generated server certificate must cover."""
        from dashtam.core.tls import DEFAULT_HOSTS

        extra = tuple(h for h in self.tls_extra_hosts if h not in DEFAULT_HOSTS)
        return DEFAULT_HOSTS + extra

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
    def effective_email_backend(self) -> Literal["console", "file", "smtp", "ses"]:
        """The email backend, defaulting to `.eml` files except in production (console)."""
        if self.email_backend is not None:
            return self.email_backend
        return "console" if self.is_production else "file"

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
