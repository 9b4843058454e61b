"""Helpers for tests that talk to the Schwab simulator, in-process or as a live HTTPS process.

async with simulator_client(tmp_root) as sim:
    code, state = await browser_login(sim, "demo", "demo-password", state="xyz")
    tokens = await exchange_code(sim, code)
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from dashtam.core.config import Settings
from dashtam.simulator.app import create_simulator_app
from dashtam.simulator.state import SimulatorState
from tests.support.live import LiveProcess, run_dashtam

CLIENT_ID = "SimTestClientId0123456789abcdef0"
CLIENT_SECRET = "SimTestClientSecret0123456789abcdef0123456789abcdef0123456789ab"
REDIRECT_URI = "https://127.0.0.1:8182"
START_TIME = datetime(2025, 6, 16, 12, 0, tzinfo=UTC)
ALL_TYPES = (
    "TRADE,RECEIVE_AND_DELIVER,DIVIDEND_OR_INTEREST,ACH_RECEIPT,ACH_DISBURSEMENT,CASH_RECEIPT,"
    "CASH_DISBURSEMENT,ELECTRONIC_FUND,WIRE_OUT,WIRE_IN,JOURNAL,MEMORANDUM,MARGIN_CALL,"
    "MONEY_MARKET,SMA_ADJUSTMENT"
)


def simulator_settings(tmp_root: Path, **overrides: object) -> Settings:
    """Settings for a simulator under test: fixed credentials, start time and no TLS."""
    values: dict[str, object] = {
        "environment": "test",
        "var_dir": tmp_root / "var",
        "certs_dir": tmp_root / "certs",
        "log_level": "WARNING",
        "tls_enabled": False,
        "simulator_client_id": CLIENT_ID,
        "simulator_client_secret": CLIENT_SECRET,
        "simulator_redirect_uris": [REDIRECT_URI],
        "simulator_start_time": START_TIME,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def simulator_client(
    tmp_root: Path, settings: Settings | None = None, **overrides: object
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client bound in-process to a freshly created simulator app.

    `sim_state(client)` returns the app's state for white-box assertions.
    """
    app = create_simulator_app(settings or simulator_settings(tmp_root, **overrides))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50001))
    async with httpx.AsyncClient(
        transport=transport, base_url="https://127.0.0.1:8443", follow_redirects=False
    ) as client:
        yield client


def basic_auth(client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> dict[str, str]:
    """The `Authorization: Basic …` header of the registered app."""
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def browser_login(
    client: httpx.AsyncClient,
    username: str = "demo",
    password: str = "demo-password",
    *,
    state: str | None = "test-state",
    redirect_uri: str = REDIRECT_URI,
    client_id: str = CLIENT_ID,
) -> tuple[str, str | None]:
    """Post the login form like a browser and return (`code`, `state`) from the redirect.

    Raises:
        AssertionError: The simulator did not redirect to `redirect_uri` with a code.
    """
    form = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "username": username,
        "password": password,
        "action": "login",
    }
    if state is not None:
        form["state"] = state
    response = await client.post("/v1/oauth/authorize", data=form)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(redirect_uri + "?"), location
    query = parse_qs(urlsplit(location).query)
    assert "code" in query, location
    return query["code"][0], query.get("state", [None])[0]


async def exchange_code(
    client: httpx.AsyncClient, code: str, *, redirect_uri: str = REDIRECT_URI
) -> dict[str, Any]:
    """Exchange a code at the token endpoint and return the JSON body (asserts 200)."""
    response = await client.post(
        "/v1/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
        headers=basic_auth(),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def login_tokens(
    client: httpx.AsyncClient, username: str = "demo", password: str | None = None
) -> dict[str, Any]:
    """Log in through the form and exchange the code: the token endpoint's body."""
    code, _ = await browser_login(client, username, password or f"{username}-password")
    return await exchange_code(client, code)


def bearer(tokens: Mapping[str, Any]) -> dict[str, str]:
    """The `Authorization: Bearer …` header for a token body."""
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def simulator_env(**extra: str) -> dict[str, str]:
    """Environment for a live `dashtam simulator` with the test credentials and start time."""
    return {
        "ENVIRONMENT": "development",
        "LOG_FORMAT": "json",
        "SIMULATOR_CLIENT_ID": CLIENT_ID,
        "SIMULATOR_CLIENT_SECRET": CLIENT_SECRET,
        "SIMULATOR_REDIRECT_URIS": REDIRECT_URI,
        "SIMULATOR_START_TIME": START_TIME.isoformat(),
        **extra,
    }


@contextmanager
def run_simulator(workdir: Path, **env: str) -> Iterator[LiveProcess]:
    """Run `dashtam simulator` as a live HTTPS process (trusting `workdir/certs/ca.pem`)."""
    with run_dashtam("simulator", workdir=workdir, env=simulator_env(**env)) as live:
        yield live


def sim_state(client: httpx.AsyncClient) -> SimulatorState:
    """The state of the in-process simulator behind a `simulator_client` client."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    state: SimulatorState = transport.app.state.simulator  # type: ignore[attr-defined]
    return state
