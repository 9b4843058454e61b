"""Builders shared by the provider unit tests: scripted transports, fake clocks, log capture."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest

from dashtam.core.logging import JsonFormatter

#: One scripted reply: a status, a ready response, or an httpx exception class to raise.
Step = int | httpx.Response | type[httpx.TransportError]


class ScriptedTransport(httpx.MockTransport):
    """Answers each request with the next scripted step and remembers every request."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []
        super().__init__(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.steps:
            raise AssertionError(f"unexpected extra request {request.method} {request.url}")
        step = self.steps.pop(0)
        if isinstance(step, int):
            return httpx.Response(step)
        if isinstance(step, httpx.Response):
            return step
        raise step("simulated failure", request=request)


class RoutedTransport(httpx.MockTransport):
    """Answers by `(method, path)` through a handler; remembers every request."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return handler(request)

        super().__init__(record)


class FakeClock:
    """A wall clock that only moves when the code under test sleeps."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class SleepRecorder:
    """An `asyncio.sleep` stand-in that returns at once and records the delays."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def json_response(
    status: int, body: Any, *, headers: dict[str, str] | None = None
) -> httpx.Response:
    """A JSON reply with Schwab's correlation header."""
    merged = {"Schwab-Client-CorrelId": "c0ffee00-0000-4000-8000-000000000001"}
    merged.update(headers or {})
    return httpx.Response(status, json=body, headers=merged)


def rendered_logs(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record as our production JSON formatter writes it."""
    formatter = JsonFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records)


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    """The structured fields of every captured record with event `name`."""
    found: list[dict[str, Any]] = []
    for record in caplog.records:
        if record.getMessage() == name:
            fields = getattr(record, "fields", {})
            found.append(dict(fields))
    return found


def capture(caplog: pytest.LogCaptureFixture) -> None:
    """Capture everything Dashtam logs, whatever the configured level."""
    caplog.set_level(logging.DEBUG, logger="dashtam")
