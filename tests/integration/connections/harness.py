"""A connected-institution test rig: the API app and the Schwab simulator, both in-process.

The API's Schwab provider talks to the simulator's ASGI app (no sockets); users are created
and logged in through the auth builders and committed at once, so the API sees them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import text

from dashtam.core.database import (
    create_read_session_factory,
    create_session_factory,
    session_scope,
)
from dashtam.core.state import AppResources
from dashtam.main import create_app
from dashtam.providers.registry import build_registry
from dashtam.simulator.app import create_simulator_app
from tests.conftest import make_settings
from tests.support.factories import LoggedIn, create_login, toolkit_for
from tests.support.simulator import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    browser_login,
    simulator_settings,
)

API = "/api/v1"
SIM_BASE = "https://127.0.0.1:8443"


def schwab_settings(tmp_root: Path, **overrides: object) -> dict[str, object]:
    """Settings pointing the Schwab provider at the simulator with its test credentials."""
    values: dict[str, object] = {
        "schwab_app_key": CLIENT_ID,
        "schwab_app_secret": CLIENT_SECRET,
        "schwab_redirect_uri": REDIRECT_URI,
        "schwab_auth_base_url": f"{SIM_BASE}/v1/oauth",
        "schwab_api_base_url": f"{SIM_BASE}/trader/v1",
        # Keep fault tests quick: two attempts, short waits.
        "provider_max_attempts": 2,
        "provider_retry_after_max": 1.0,
    }
    values.update(overrides)
    return values


@dataclass
class Rig:
    """The API client, the simulator client and the resources behind them."""

    resources: AppResources
    api: httpx.AsyncClient
    sim: httpx.AsyncClient
    #: The API app's in-process transport (for a callback server under test).
    api_transport: httpx.ASGITransport

    async def login(self) -> LoggedIn:
        """A verified user with a live session (committed)."""
        toolkit = toolkit_for(self.resources.settings, self.resources.kv)
        async with session_scope(self.resources.session_factory) as session:
            return await create_login(session, toolkit)

    async def create_provider(self, who: LoggedIn, alias: str = "Brokerage") -> str:
        """`POST /providers` for Schwab; returns the id."""
        response = await self.api.post(
            f"{API}/providers", json={"provider_key": "schwab", "alias": alias}, headers=who.headers
        )
        assert response.status_code == 201, response.text
        provider_id: str = response.json()["id"]
        return provider_id

    async def start(self, who: LoggedIn, provider_id: str) -> dict[str, Any]:
        """`POST /providers/{id}/authorization`; returns the body."""
        response = await self.api.post(
            f"{API}/providers/{provider_id}/authorization", headers=who.headers
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def institution_login(
        self, authorization_url: str, username: str = "demo", password: str | None = None
    ) -> tuple[str, str]:
        """Log in at the simulator like a browser would; returns (code, state)."""
        query = parse_qs(urlsplit(authorization_url).query)
        page = await self.sim.get(urlsplit(authorization_url).path, params=query)
        assert page.status_code == 200, page.text
        code, state = await browser_login(
            self.sim,
            username,
            password or f"{username}-password",
            state=query["state"][0],
            redirect_uri=query["redirect_uri"][0],
            client_id=query["client_id"][0],
        )
        assert state is not None
        return code, state

    async def callback(
        self, provider_id: str, *, headers: dict[str, str] | None = None, **params: str
    ) -> httpx.Response:
        """`GET /providers/{id}/authorization/callback` with no bearer token."""
        return await self.api.get(
            f"{API}/providers/{provider_id}/authorization/callback",
            params=params,
            headers=headers or {},
        )

    async def connect(self, who: LoggedIn, alias: str = "Brokerage", username: str = "demo") -> str:
        """Create, authorize and complete a provider; returns its id (now `active`)."""
        provider_id = await self.create_provider(who, alias)
        await self.reauthorize(who, provider_id, username=username)
        return provider_id

    async def reauthorize(self, who: LoggedIn, provider_id: str, username: str = "demo") -> None:
        """Run the authorization flow again for an existing provider."""
        started = await self.start(who, provider_id)
        code, state = await self.institution_login(started["authorization_url"], username)
        response = await self.callback(provider_id, code=code, state=state)
        assert response.status_code == 200, response.text

    async def token_grants(self) -> dict[str, int]:
        """Token-endpoint calls per grant type, from the simulator's stats."""
        response = await self.sim.get("/control/stats")
        assert response.status_code == 200, response.text
        grants: dict[str, int] = response.json()["token_grants"]
        return grants

    async def advance(self, seconds: float) -> None:
        """Move the simulator's clock forward."""
        response = await self.sim.post("/control/clock", json={"advance_seconds": seconds})
        assert response.status_code == 200, response.text

    async def fault(self, **fault: Any) -> None:
        """Inject a simulator fault."""
        response = await self.sim.post("/control/faults", json=fault)
        assert response.status_code == 201, response.text

    async def refresh_mode(self, mode: str) -> None:
        """`same`, `rotate` or `omit`."""
        response = await self.sim.put("/control/refresh-mode", json={"mode": mode})
        assert response.status_code == 200, response.text

    async def status(self, who: LoggedIn, provider_id: str) -> dict[str, Any]:
        """`GET /providers/{id}/authorization`."""
        response = await self.api.get(
            f"{API}/providers/{provider_id}/authorization", headers=who.headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def sql(self, statement: str, **params: Any) -> list[dict[str, Any]]:
        """Raw rows straight from the database (no ORM, no type decoding)."""
        async with self.resources.engine.connect() as conn:
            result = await conn.execute(text(statement), params)
            rows = [dict(row._mapping) for row in result]
            await conn.rollback()
        return rows


@asynccontextmanager
async def rig(
    resources: AppResources,
    tmp_root: Path,
    *,
    simulator: dict[str, object] | None = None,
    **settings_overrides: object,
) -> AsyncIterator[Rig]:
    """The API (over the test database and KV store) wired to an in-process simulator."""
    sim_app = create_simulator_app(simulator_settings(tmp_root, **(simulator or {})))
    sim_transport = httpx.ASGITransport(app=sim_app, client=("127.0.0.1", 50001))
    settings = make_settings(tmp_root, **schwab_settings(tmp_root, **settings_overrides))
    settings.ensure_secrets()
    custom = AppResources(
        settings=settings,
        engine=resources.engine,
        session_factory=create_session_factory(resources.engine),
        kv=resources.kv,
        # As the app builds them: autocommit reads on PostgreSQL, None on SQLite.
        read_session_factory=create_read_session_factory(resources.engine),
    )
    registry = build_registry(settings, resources.kv, transport=sim_transport)
    custom.extras["providers"] = registry
    custom.add_closer(registry.aclose)
    app = create_app(settings, resources=custom)
    api_transport = httpx.ASGITransport(app=app, client=("203.0.113.10", 50000))
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=api_transport, base_url="https://test") as api,
            httpx.AsyncClient(transport=sim_transport, base_url=SIM_BASE) as sim,
        ):
            yield Rig(resources=custom, api=api, sim=sim, api_transport=api_transport)
    finally:
        for closer in reversed(custom.closers):
            await closer()
