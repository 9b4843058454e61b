"""The env templates under `env/` document every setting, and only real ones.

Each field of `Settings` must appear in all four Dashtam templates as `NAME=value` or
`# NAME=value`, so adding a setting without documenting it fails here. Values that are set must
validate, and secrets must be placeholders.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from dashtam.core.config import Settings, looks_like_placeholder

ROOT = Path(__file__).resolve().parents[2]
ENV_DIR = ROOT / "env"
TEMPLATES = ("dev", "test", "ci", "prod")

#: `NAME=value` or `# NAME=value` (a setting line); prose comments never start with `NAME=`.
_SETTING_LINE = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def template_path(env: str) -> Path:
    return ENV_DIR / f".env.{env}.example"


def parse_template(text: str) -> tuple[dict[str, str], set[str]]:
    """Return (values of uncommented settings, names of every setting mentioned)."""
    active: dict[str, str] = {}
    mentioned: set[str] = set()
    for raw in text.splitlines():
        match = _SETTING_LINE.match(raw.strip())
        if not match:
            continue
        name = match.group("name")
        if name in mentioned:
            raise AssertionError(f"{name} appears twice")
        mentioned.add(name)
        if match.group("comment") is None:
            active[name] = match.group("value")
    return active, mentioned


def setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def secret_names() -> set[str]:
    return {
        name.upper()
        for name, field in Settings.model_fields.items()
        if SecretStr in getattr(field.annotation, "__args__", (field.annotation,))
    }


class TestParser:
    def test_reads_set_and_commented_settings_but_not_prose(self) -> None:
        active, mentioned = parse_template(
            "# Say PORT=1 in prose.\n# HOST=127.0.0.1\nPORT=8000\n#   LOG_LEVEL=INFO\n\n"
        )
        assert active == {"PORT": "8000"}
        assert mentioned == {"HOST", "PORT", "LOG_LEVEL"}

    def test_rejects_a_setting_listed_twice(self) -> None:
        with pytest.raises(AssertionError, match="PORT appears twice"):
            parse_template("PORT=1\n# PORT=2\n")

    def test_finds_secret_fields(self) -> None:
        assert {"SECRET_KEY", "ENCRYPTION_KEYS"} <= secret_names()
        assert "PORT" not in secret_names()


@pytest.mark.parametrize("env", TEMPLATES)
class TestTemplate:
    def test_exists(self, env: str) -> None:
        assert template_path(env).is_file(), f"missing {template_path(env)}"

    def test_mentions_every_setting(self, env: str) -> None:
        _, mentioned = parse_template(template_path(env).read_text())
        missing = sorted(setting_names() - mentioned)
        assert not missing, (
            f"{template_path(env).name} does not document {missing}: add each as `NAME=value` "
            "or `# NAME=default` with a comment saying what it does (see env/README.md)"
        )

    def test_names_only_existing_settings(self, env: str) -> None:
        _, mentioned = parse_template(template_path(env).read_text())
        unknown = sorted(mentioned - setting_names())
        assert not unknown, f"{template_path(env).name} names settings that do not exist: {unknown}"

    def test_every_setting_line_has_a_comment_above_it(self, env: str) -> None:
        lines = template_path(env).read_text().splitlines()
        for index, line in enumerate(lines):
            if _SETTING_LINE.match(line.strip()):
                above = lines[index - 1].strip() if index else ""
                assert above.startswith("#") and not _SETTING_LINE.match(above), (
                    f"{template_path(env).name}:{index + 1} `{line}` has no explaining comment"
                )

    def test_set_values_are_valid_settings(self, env: str, monkeypatch: pytest.MonkeyPatch) -> None:
        active, _ = parse_template(template_path(env).read_text())
        for name in setting_names():
            monkeypatch.delenv(name, raising=False)
        for name, value in active.items():
            monkeypatch.setenv(name, value)
        Settings()  # raises ValidationError when a value does not parse

    def test_secrets_are_empty_or_placeholders(self, env: str) -> None:
        active, _ = parse_template(template_path(env).read_text())
        for name in secret_names() & active.keys():
            value = active[name]
            assert value == "" or "change-me" in value.lower(), (
                f"{template_path(env).name}: {name} must be a `change-me-...` placeholder"
            )
            assert value == "" or looks_like_placeholder(value)

    def test_no_real_looking_credentials_in_urls(self, env: str) -> None:
        active, _ = parse_template(template_path(env).read_text())
        for name in ("DATABASE_URL", "REDIS_URL"):
            match = re.search(r"://[^:/@]*:([^@]+)@", active.get(name, ""))
            if match:
                assert match.group(1).startswith("change-me"), f"{name} holds a real password"


class TestProductionTemplate:
    def active(self) -> dict[str, str]:
        return parse_template(template_path("prod").read_text())[0]

    def test_runs_in_production_mode_on_postgres_and_redis_by_service_name(self) -> None:
        values = self.active()
        assert values["ENVIRONMENT"] == "production"
        assert values["DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert "@postgres:5432/" in values["DATABASE_URL"]
        assert re.match(r"^redis://[^/]*@redis:6379/\d+$", values["REDIS_URL"])

    def test_placeholder_secrets_would_be_refused(self) -> None:
        values = self.active()
        settings = Settings(
            environment="production",
            secret_key=values["SECRET_KEY"],
            encryption_keys=values["ENCRYPTION_KEYS"],
        )
        with pytest.raises(Exception, match="placeholder"):
            settings.ensure_secrets()

    def test_trusts_exactly_the_proxy_address_of_the_compose_file(self) -> None:
        compose = (ROOT / "compose" / "docker-compose.prod.yml").read_text()
        proxy = self.active()["TRUSTED_PROXIES"]
        assert proxy and "," not in proxy and "/" not in proxy
        assert f"ipv4_address: {proxy}" in compose


class TestDevelopmentTemplates:
    @pytest.mark.parametrize("env", ["dev", "test", "ci"])
    def test_use_the_compose_services_without_passwords(self, env: str) -> None:
        values = parse_template(template_path(env).read_text())[0]
        assert "@postgres:5432/" in values["DATABASE_URL"]
        assert values["REDIS_URL"].startswith("redis://redis:6379/")
        assert values["HOST"] == "0.0.0.0"

    @pytest.mark.parametrize("env", ["dev", "test"])
    def test_api_credentials_match_the_simulator(self, env: str) -> None:
        values = parse_template(template_path(env).read_text())[0]
        assert values["SCHWAB_APP_KEY"] == values["SIMULATOR_CLIENT_ID"]
        assert values["SCHWAB_APP_SECRET"] == values["SIMULATOR_CLIENT_SECRET"]
