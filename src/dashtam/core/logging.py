"""Structured logging: one JSON object per line, with secrets redacted before they are written.

Call sites log a dotted event name plus fields:
`logger.info("auth.login.failed", extra={"fields": {"reason": "bad_password"}})`, or use
`log_event(logger, "auth.login.failed", reason=...)`. Request, user and provider ids are
attached from the request context automatically.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dashtam.core.request_context import (
    current_job,
    current_provider_id,
    current_request_id,
    current_user_id,
)

REDACTED = "[REDACTED]"

#: Field names whose values are never written (matched case-insensitively, as substrings).
_SENSITIVE_KEY = re.compile(
    r"(authorization|password|passwd|secret|token|api[_-]?key|private[_-]?key|encryption[_-]?key"
    r"|cookie|^code$|_code$|^state$|verifier|credential|session[_-]?key)",
    re.IGNORECASE,
)
#: Secret-looking substrings inside free text.
_SENSITIVE_TEXT = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=@-]+"), r"\1 " + REDACTED),
    (
        re.compile(
            r"(?i)\b(access_token|refresh_token|id_token|token|password|code|state|client_secret"
            r"|secret_key)=([^&\s\"']+)"
        ),
        r"\1=" + REDACTED,
    ),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"), REDACTED),
)
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "fields",
    "color_message",
}


def redact_text(text: str) -> str:
    """Mask bearer tokens, JWTs and secret-looking query parameters in free text."""
    for pattern, replacement in _SENSITIVE_TEXT:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, key: str | None = None) -> Any:
    """Return `value` with every sensitive member masked, recursively."""
    if key is not None and _SENSITIVE_KEY.search(key):
        return REDACTED if value not in (None, "") else value
    if isinstance(value, Mapping):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


class JsonFormatter(logging.Formatter):
    """Formats records as single-line JSON with context ids and redaction."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": redact_text(record.getMessage()),
        }
        for name, getter in (
            ("request_id", current_request_id),
            ("user_id", current_user_id),
            ("provider_id", current_provider_id),
        ):
            value = getter()
            if value:
                payload[name] = value
        for name, value in (current_job() or {}).items():
            payload.setdefault(name, value)
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            payload.update(redact(dict(fields)))
        for attr, value in record.__dict__.items():
            if attr not in _RESERVED and not attr.startswith("_") and attr not in payload:
                payload[attr] = redact(value, attr)
        if record.exc_info and record.exc_info[0] is not None:
            payload["error_type"] = record.exc_info[0].__name__
            payload["exception"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)


class ConsoleFormatter(JsonFormatter):
    """Human-friendly single line for local terminals (still redacted)."""

    def format(self, record: logging.LogRecord) -> str:
        data = json.loads(super().format(record))
        head = f"{data.pop('ts')} {data.pop('level').upper():7} {data.pop('event')}"
        data.pop("logger", None)
        exception = data.pop("exception", None)
        tail = " ".join(f"{k}={v}" for k, v in data.items())
        line = f"{head} {tail}".rstrip()
        return f"{line}\n{exception}" if exception else line


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Install the structured handler on the root logger (idempotent).

    Args:
        level: Minimum level name.
        fmt: `json` for machines, `console` for people.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ConsoleFormatter() if fmt == "console" else JsonFormatter())
    handler.set_name("dashtam")
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == "dashtam":
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Uvicorn's access log prints query strings (OAuth codes, states): we log requests ourselves.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        uv_logger = logging.getLogger(name)
        uv_logger.handlers = []
        uv_logger.propagate = True
    for noisy in ("httpx", "httpcore", "aiosqlite", "asyncio", "taskiq", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log a dotted event name with structured fields."""
    logger.log(level, event, extra={"fields": fields})
