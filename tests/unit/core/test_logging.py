"""Structured logs: one JSON object per line, context ids attached, secrets never written."""

from __future__ import annotations

import json
import logging

import pytest

from dashtam.core.logging import REDACTED, ConsoleFormatter, JsonFormatter, redact, redact_text
from dashtam.core.request_context import set_request_id, set_user_id


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


class TestRedact:
    @pytest.mark.parametrize(
        "key",
        [
            "password",
            "new_password",
            "Authorization",
            "refresh_token",
            "client_secret",
            "code",
            "state",
            "code_verifier",
            "ENCRYPTION_KEYS",
            "api_key",
        ],
    )
    def test_sensitive_keys_are_masked(self, key: str) -> None:
        assert redact({key: "s3cr3t"}) == {key: REDACTED}

    def test_nested_structures_are_walked(self) -> None:
        data = {"outer": {"token": "abc", "ok": 1}, "items": [{"password": "p"}]}
        assert redact(data) == {
            "outer": {"token": REDACTED, "ok": 1},
            "items": [{"password": REDACTED}],
        }

    def test_free_text_secrets_are_masked(self) -> None:
        text = "GET /cb?code=C0.abc%40&state=xyz Authorization: Bearer eyJhbGciOi.eyJzdWIi.sig"
        masked = redact_text(text)
        assert "C0.abc" not in masked
        assert "xyz" not in masked
        assert "eyJhbGciOi" not in masked

    def test_ordinary_values_pass_through(self) -> None:
        assert redact({"status": 200, "route": "/health"}) == {"status": 200, "route": "/health"}


class TestJsonFormatter:
    def test_line_is_json_with_context_and_redacted_fields(self) -> None:
        set_request_id("req-12345678")
        set_user_id("user-1")
        try:
            line = JsonFormatter().format(
                _record("auth.login.failed", fields={"password": "hunter22", "reason": "bad"})
            )
        finally:
            set_request_id(None)
            set_user_id(None)
        data = json.loads(line)
        assert data["event"] == "auth.login.failed"
        assert data["request_id"] == "req-12345678"
        assert data["user_id"] == "user-1"
        assert data["password"] == REDACTED
        assert data["reason"] == "bad"
        assert "hunter22" not in line

    def test_exception_text_is_redacted(self) -> None:
        try:
            raise ValueError("failed with access_token=abcdef123456")
        except ValueError:
            import sys

            record = _record("boom")
            record.exc_info = sys.exc_info()
        line = JsonFormatter().format(record)
        assert "abcdef123456" not in line
        assert json.loads(line)["error_type"] == "ValueError"

    def test_console_format_is_one_readable_line(self) -> None:
        line = ConsoleFormatter().format(_record("app.started", fields={"kv": "memory"}))
        assert "app.started" in line
        assert "kv=memory" in line
