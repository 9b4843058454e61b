"""The callback server in-process, handing redirects to the in-process API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from dashtam.callback.app import create_callback_app
from tests.conftest import make_settings
from tests.integration.connections.harness import Rig


@asynccontextmanager
async def callback_server(
    tmp_root: Path, transport: httpx.AsyncBaseTransport
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(tmp_root, callback_api_base_url="https://test", log_level="INFO")
    app = create_callback_app(settings, transport=transport)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("198.51.100.20", 40000)),
            base_url="https://127.0.0.1:8182",
        ) as client,
    ):
        yield client


class _Unreachable(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)


class TestCallbackServer:
    async def test_connects_and_never_logs_code_or_state(
        self, connections: Rig, tmp_root: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        who = await connections.login()
        provider_id = await connections.create_provider(who)
        started = await connections.start(who, provider_id)
        code, state = await connections.institution_login(started["authorization_url"])
        caplog.set_level(logging.INFO)

        async with callback_server(tmp_root, connections.api_transport) as browser:
            page = await browser.get("/", params={"code": code, "session": "s", "state": state})
            replay = await browser.get("/", params={"code": code, "state": state})

        assert page.status_code == 200
        assert 'data-outcome="connected"' in page.text
        assert page.headers["cache-control"] == "no-store"
        assert (await connections.status(who, provider_id))["status"] == "active"
        assert replay.status_code == 400
        assert "Invalid authorization state" in replay.text
        logged = " ".join(str(vars(record)) for record in caplog.records)
        assert "http.request" in logged
        assert code not in logged and state not in logged
        assert state.split(".", 1)[1] not in logged

    async def test_institution_error_is_shown(self, connections: Rig, tmp_root: Path) -> None:
        who = await connections.login()
        provider_id = await connections.create_provider(who)
        started = await connections.start(who, provider_id)

        async with callback_server(tmp_root, connections.api_transport) as browser:
            page = await browser.get(
                "/", params={"error": "access_denied", "state": started["state"]}
            )

        assert page.status_code == 400
        assert "declined" in page.text
        assert 'data-outcome="failed"' in page.text

    @pytest.mark.parametrize(
        "params",
        [{}, {"code": "c"}, {"code": "c", "state": "<script>x</script>.y"}, {"state": "a.b"}],
    )
    async def test_damaged_links_get_a_400_page_without_calling_the_api(
        self, tmp_root: Path, params: dict[str, str]
    ) -> None:
        async with callback_server(tmp_root, _Unreachable()) as browser:
            page = await browser.get("/", params=params)

        assert page.status_code == 400
        assert "Invalid link" in page.text
        assert "<script>x" not in page.text

    async def test_unreachable_api_is_a_502_page(self, tmp_root: Path) -> None:
        state = "0b6f1c1e-8a45-4d0e-9d2a-3d3f1f4b2a10." + "A" * 43

        async with callback_server(tmp_root, _Unreachable()) as browser:
            page = await browser.get("/", params={"code": "c", "state": state})
            health = await browser.get("/health")
            live = await browser.get("/health/live")

        assert page.status_code == 502
        assert "unreachable" in page.text
        assert health.json()["status"] == "degraded"
        assert live.json() == {"status": "ok"}
