"""End to end over HTTPS with real processes: API + callback server + simulator.

A person's browser is played by httpx: it opens the authorization URL, posts the simulator's
login form as a browser would, and follows the redirect to the callback server, which hands
the code to the API. The provider ends up `active` with tokens stored.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from sqlalchemy import make_url

from dashtam.core.config import Settings, generate_encryption_key, generate_secret_key
from dashtam.core.database import create_engine, create_session_factory, session_scope
from dashtam.core.tls import client_ssl_context, ensure_certificates
from tests.support.backends import recreate_postgres_database, worker_redis_url
from tests.support.factories import KNOWN_PASSWORD, create_user
from tests.support.live import LiveProcess, free_port, run_dashtam
from tests.support.simulator import CLIENT_ID, CLIENT_SECRET, simulator_env

pytestmark = pytest.mark.smoke


class FormParser(HTMLParser):
    """Collects the first form's action and its named inputs, as a browser would submit them."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action, self._in_form = values.get("action", ""), True
        elif tag == "input" and self._in_form and values.get("name"):
            self.fields[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


@dataclass
class System:
    """The three live processes and what a client needs to use them."""

    api: LiveProcess
    callback: LiveProcess
    simulator: LiveProcess
    database_url: str
    ca_file: Path


def _database_url(workdir: Path) -> str:
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        return f"sqlite+aiosqlite:///{(workdir / 'var' / 'e2e.db').as_posix()}"
    url = make_url(base)
    name = f"{url.database or 'dashtam_test'}_e2e_{uuid.uuid4().hex[:8]}"
    rendered = url.set(database=name).render_as_string(hide_password=False)
    asyncio.run(recreate_postgres_database(rendered))
    return rendered


@contextmanager
def live_system(workdir: Path) -> Iterator[System]:
    """Start simulator, API and callback server on free ports, wired to each other."""
    certs = workdir / "certs"
    ensure_certificates(certs)
    api_port, callback_port = free_port(), free_port()
    redirect_uri = f"https://127.0.0.1:{callback_port}"
    database_url = _database_url(workdir)
    common = {"CERTS_DIR": str(certs), "VAR_DIR": str(workdir / "var"), "LOG_LEVEL": "INFO"}
    with ExitStack() as stack:
        # Registered first, so it runs last: after every process has stopped.
        stack.callback(_drop_database, database_url)
        simulator = stack.enter_context(
            run_dashtam(
                "simulator",
                workdir=workdir,
                env={**common, **simulator_env(SIMULATOR_REDIRECT_URIS=redirect_uri)},
            )
        )
        api_env = {
            **common,
            "ENVIRONMENT": "development",
            "DATABASE_URL": database_url,
            "SECRET_KEY": generate_secret_key(),
            "ENCRYPTION_KEYS": generate_encryption_key("e2e"),
            "SCHWAB_APP_KEY": CLIENT_ID,
            "SCHWAB_APP_SECRET": CLIENT_SECRET,
            "SCHWAB_REDIRECT_URI": redirect_uri,
            "SCHWAB_AUTH_BASE_URL": f"{simulator.base_url}/v1/oauth",
            "SCHWAB_API_BASE_URL": f"{simulator.base_url}/trader/v1",
            "PROVIDER_CA_FILE": str(certs / "ca.pem"),
        }
        if (redis_url := worker_redis_url()) is not None:
            api_env["REDIS_URL"] = redis_url
        api = stack.enter_context(
            run_dashtam("api", workdir=workdir, env=api_env, port=api_port, timeout=60)
        )
        callback = stack.enter_context(
            run_dashtam(
                "callback",
                workdir=workdir,
                env={**common, "CALLBACK_API_BASE_URL": api.base_url},
                port=callback_port,
            )
        )
        yield System(api, callback, simulator, database_url, certs / "ca.pem")


def _drop_database(database_url: str) -> None:
    """Remove a PostgreSQL database made for one run (SQLite files go with the temp dir)."""
    if not database_url.startswith("postgresql"):
        return

    async def drop() -> None:
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        url = make_url(database_url)
        admin = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        finally:
            await admin.dispose()

    asyncio.run(drop())


async def _create_user(database_url: str) -> str:
    settings = Settings(environment="test", database_url=database_url)
    engine = create_engine(database_url, settings)
    try:
        async with session_scope(create_session_factory(engine)) as session:
            user = await create_user(session)
            return user.email
    finally:
        await engine.dispose()


def login_and_connect(system: System, email: str) -> tuple[str, httpx.Response, dict[str, str]]:
    """Log in to the API, create a provider, and connect it through the 'browser'."""
    with system.api.client(timeout=30) as api:
        login = api.post("/api/v1/auth/login", json={"email": email, "password": KNOWN_PASSWORD})
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        created = api.post(
            "/api/v1/providers", json={"provider_key": "schwab", "alias": "E2E"}, headers=headers
        )
        assert created.status_code == 201, created.text
        provider_id = created.json()["id"]
        started = api.post(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
        assert started.status_code == 201, started.text
        authorization_url = started.json()["authorization_url"]

    context = client_ssl_context(system.ca_file)
    with httpx.Client(verify=context, follow_redirects=True, timeout=60) as browser:
        page = browser.get(authorization_url, headers={"Accept": "text/html"})
        assert page.status_code == 200, page.text
        form = FormParser()
        form.feed(page.text)
        assert form.action is not None
        fields = {**form.fields, "username": "demo", "password": "demo-password"}
        fields["action"] = "login"
        result = browser.post(
            urljoin(str(page.url), form.action), data=fields, headers={"Accept": "text/html"}
        )
    return provider_id, result, headers


class TestConnectJourney:
    def test_browser_login_lands_on_a_connected_page_and_activates_the_provider(
        self, tmp_root: Path
    ) -> None:
        workdir = tmp_root / f"e2e-{uuid.uuid4().hex[:8]}"
        with live_system(workdir) as system:
            email = asyncio.run(_create_user(system.database_url))

            provider_id, result, headers = login_and_connect(system, email)

            assert result.status_code == 200, result.text
            assert 'data-outcome="connected"' in result.text
            assert str(result.url).startswith(system.callback.base_url)
            redirect = result.history[-1]
            assert redirect.status_code == 302
            location = redirect.headers["location"]
            assert location.startswith(system.callback.base_url + "?code=")
            with system.api.client(timeout=30) as api:
                status = api.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
            assert status.json()["status"] == "active"
            assert status.json()["access_expires_at"] is not None
            code = httpx.URL(location).params["code"]
            state = httpx.URL(location).params["state"]
            logs = system.api.logs() + system.callback.logs()
            assert "http.request" in logs
            assert code not in logs and state not in logs
            assert code.rstrip("@") not in logs
