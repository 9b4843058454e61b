"""Pure pieces of the auth domain: normalisation, request schemas, token pair maths, lockout."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from dashtam.api.routes.auth import problem_responses
from dashtam.core.config import Settings
from dashtam.core.kv import MemoryKeyValueStore
from dashtam.schemas.auth import LoginRequest, LogoutRequest, RegisterRequest
from dashtam.services.auth.errors import (
    InvalidCredentials,
    InvalidRefreshToken,
    TooManyAttempts,
    WeakPassword,
)
from dashtam.services.auth.lockout import LoginLockout
from dashtam.services.auth.sessions import TokenPair
from dashtam.services.auth.toolkit import ClientInfo, build_auth_toolkit, normalize_email


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "secret_key": "unit-test-secret-key-that-is-long-enough-0123456789",
        "encryption_keys": "k1:" + "A" * 43,
        "var_dir": tmp_path,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


class TestNormalizeEmail:
    def test_trims_and_lowercases(self) -> None:
        assert normalize_email("  Ann.Example@Example.COM \n") == "ann.example@example.com"


class TestClientInfo:
    def test_truncates_to_the_column_sizes(self) -> None:
        info = ClientInfo.of(ip_address="1" * 100, user_agent="u" * 2000, request_id="r" * 300)

        assert len(info.ip_address or "") == 45
        assert len(info.user_agent or "") == 512
        assert len(info.request_id or "") == 128

    def test_keeps_missing_values_missing(self) -> None:
        assert ClientInfo.of(ip_address=None, user_agent="", request_id=None) == ClientInfo()


class TestRequestSchemas:
    def test_register_trims_the_name_and_hides_the_password(self) -> None:
        body = RegisterRequest.model_validate(
            {"email": "a@example.com", "password": "s3cret-value-here", "name": "  Ann  "}
        )

        assert body.name == "Ann"
        assert "s3cret" not in repr(body)
        assert body.password.get_secret_value() == "s3cret-value-here"

    @pytest.mark.parametrize(
        "overrides",
        [
            {"name": ""},
            {"name": "a" * 101},
            {"name": "line\nbreak"},
            {"email": "no-at-sign"},
            {"role": "admin"},
            {"password": ""},
        ],
    )
    def test_register_rejects(self, overrides: dict[str, object]) -> None:
        body = {"email": "a@example.com", "password": "long-enough-password", "name": "A"}
        with pytest.raises(ValidationError):
            RegisterRequest.model_validate({**body, **overrides})

    def test_login_forbids_unknown_fields(self) -> None:
        with pytest.raises(ValidationError):
            LoginRequest.model_validate({"email": "a@example.com", "password": "x", "sso": 1})

    def test_logout_body_is_all_optional(self) -> None:
        assert LogoutRequest.model_validate({}).refresh_token is None


class TestTokenPair:
    def test_seconds_left_rounds_down_and_never_goes_negative(self) -> None:
        now = datetime(2026, 1, 1, tzinfo=UTC)
        pair = TokenPair(
            user_id=uuid.uuid4(),
            session_id=uuid.uuid4(),
            access_token="a",
            access_expires_at=now + timedelta(minutes=30, milliseconds=900),
            refresh_token="r",
            refresh_expires_at=now - timedelta(seconds=5),
        )

        assert pair.seconds_left(now) == (1800, 0)


class TestProblemResponses:
    def test_groups_codes_by_status(self) -> None:
        responses = problem_responses(
            InvalidCredentials, InvalidRefreshToken, TooManyAttempts, WeakPassword
        )

        assert sorted(responses) == [401, 422, 429]
        assert "`invalid_credentials`" in responses[401]["description"]
        assert "`invalid_refresh_token`" in responses[401]["description"]
        assert "`weak_password`" in responses[422]["description"]


class TestLoginLockout:
    async def test_locks_at_the_threshold_per_normalised_identifier(self, tmp_path: Path) -> None:
        toolkit = build_auth_toolkit(
            _settings(tmp_path, login_lockout_threshold=3, login_lockout_minutes=7),
            MemoryKeyValueStore(),
        )
        lockout = LoginLockout(toolkit)

        outcomes = [await lockout.register_failure("a@example.com") for _ in range(3)]
        check = await lockout.check("a@example.com")
        other = await lockout.check("b@example.com")

        assert [o.just_locked for o in outcomes] == [False, False, True]
        assert check.locked is True
        assert 6 * 60 < check.retry_after <= 7 * 60
        assert other.locked is False
        assert lockout.key("a@example.com") != lockout.key("b@example.com")
        assert "example" not in lockout.key("a@example.com")  # no address in the KV store

    async def test_clear_forgets_failures(self, tmp_path: Path) -> None:
        toolkit = build_auth_toolkit(_settings(tmp_path), MemoryKeyValueStore())
        lockout = LoginLockout(toolkit)
        await lockout.register_failure("a@example.com")
        assert (await lockout.check("a@example.com")).had_failures is True

        await lockout.clear("a@example.com")

        assert (await lockout.check("a@example.com")).had_failures is False
