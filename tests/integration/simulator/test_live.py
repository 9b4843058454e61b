"""`dashtam simulator` as a real HTTPS process: login, tokens, data and a real dropped socket."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.simulator import (
    CLIENT_ID,
    REDIRECT_URI,
    basic_auth,
    run_simulator,
)

pytestmark = pytest.mark.smoke


class TestLiveSimulator:
    def test_full_flow_over_https_and_a_dropped_connection(self, tmp_path: Path) -> None:
        with run_simulator(tmp_path) as live, live.client(timeout=10.0) as client:
            assert client.get("/health/live").json() == {"status": "ok"}
            page = client.get(
                "/v1/oauth/authorize", params={"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI}
            )
            assert page.status_code == 200 and 'name="password"' in page.text
            login = client.post(
                "/v1/oauth/authorize",
                data={
                    "client_id": CLIENT_ID,
                    "redirect_uri": REDIRECT_URI,
                    "state": "live",
                    "username": "demo",
                    "password": "demo-password",
                    "action": "login",
                },
            )
            assert login.status_code == 302
            query = parse_qs(urlsplit(login.headers["location"]).query)
            assert query["state"] == ["live"]
            tokens = client.post(
                "/v1/oauth/token",
                data={
                    "grant_type": "authorization_code",
                    "code": query["code"][0],
                    "redirect_uri": REDIRECT_URI,
                },
                headers=basic_auth(),
            ).json()
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            accounts = client.get("/trader/v1/accounts", headers=headers)
            assert accounts.status_code == 200 and len(accounts.json()) == 2
            assert accounts.headers["Schwab-Client-CorrelId"]

            client.post("/control/faults", json={"kind": "drop"})
            with pytest.raises(httpx.TransportError):
                client.get("/trader/v1/accounts", headers=headers)
            # The server survived and the next request is served.
            assert client.get("/trader/v1/accounts", headers=headers).status_code == 200
            stats = client.get("/control/stats").json()
            assert stats["faults_injected"] == 1
            assert "Exception in ASGI application" not in live.logs()
            assert "without starting response" not in live.logs()
            assert tokens["access_token"] not in live.logs()
