"""The reference launcher serves apps with exactly the uvicorn arguments Dashtam uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn
from bench.reference.health import create_app
from bench.reference.launcher import main, uvicorn_kwargs

import dashtam.core.logging
from dashtam.cli import serve
from dashtam.core.config import Settings, generate_encryption_key, generate_secret_key


def capture_run(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def fake_run(app: str, **kwargs: Any) -> None:
        calls.append({"app": app, **kwargs})

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setattr(dashtam.core.logging, "configure_logging", lambda *a, **k: None)
    return calls


class TestLauncher:
    def test_same_uvicorn_arguments_as_dashtam_cli_serve(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls = capture_run(monkeypatch)
        settings = Settings(
            certs_dir=tmp_path / "certs",
            secret_key=generate_secret_key(),
            encryption_keys=generate_encryption_key(),
            trusted_proxies=[],
            log_level="WARNING",
        )
        serve("dashtam.main:create_app", settings, host="127.0.0.1", port=8443)
        (dashtam_kwargs,) = calls
        ours = uvicorn_kwargs(
            "dashtam.main:create_app",
            host="127.0.0.1",
            port=8443,
            certfile=str(tmp_path / "certs" / "server.pem"),
            keyfile=str(tmp_path / "certs" / "server-key.pem"),
        )
        assert ours == dashtam_kwargs

    def test_main_serves_the_app_with_the_certificates(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls = capture_run(monkeypatch)
        main(["--app", "bench.reference.health:create_app", "--port", "9", "--certs-dir", "c"])
        (kwargs,) = calls
        assert kwargs["app"] == "bench.reference.health:create_app"
        assert kwargs["port"] == 9
        assert kwargs["ssl_certfile"] == str(Path("c") / "server.pem")
        assert kwargs["ssl_keyfile"] == str(Path("c") / "server-key.pem")


class TestHealthReference:
    async def test_answers_like_dashtams_liveness_route(self) -> None:
        import httpx

        transport = httpx.ASGITransport(app=create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/health/live")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
