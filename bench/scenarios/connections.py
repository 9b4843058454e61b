"""Institution-connection benchmarks, driven by a Python client against live processes.

* `connect_round_trip`: the whole connect journey (authorization start at the API → the
  simulator's login page and form → redirect to the callback server → the API exchanges the
  code and stores the tokens) next to the bare token exchange it contains, `POST
  /v1/oauth/token` with an authorization code straight at the simulator.
* `refresh_vs_plain`: `PATCH /providers/{id}/authorization` (an upstream token refresh) next to
  `GET /providers/{id}/authorization` (no upstream call) on the same connected provider.

The simulator, API and callback server run as real HTTPS processes on free ports, wired like
`dashtam dev` wires them. Meant for `--backend postgres`: with the embedded backend the first
sync that every completed connection queues runs inside the API process while it is measured.
"""

from __future__ import annotations

import base64
import secrets
import sys
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from sqlalchemy import update

from bench.scenarios.base import FlowContext, FlowStep, PythonFlow, Scenario, Target
from bench.seeding import BENCH_USER_PASSWORD, create_users
from bench.servers import dashtam_command, free_port

API = "/api/v1"
SIM_USER = "demo"
SIM_PASSWORD = "demo-password"
#: Limits the journeys would otherwise hit (authorization starts are 20/hour by default).
RELAXED = {
    "RATE_LIMIT_LOGIN": "1000000/minute",
    "RATE_LIMIT_USER": "1000000/minute",
    "RATE_LIMIT_PROVIDER_AUTHORIZATION": "1000000/hour",
    "SCHWAB_REQUESTS_PER_MINUTE": "1000000",
    # No scheduled syncs competing with the measured requests.
    "SCHEDULER_ENABLED": "false",
}


class FlowFailed(RuntimeError):
    """A request of the journey got an answer it should not have."""


def expect(response: httpx.Response, status: int) -> httpx.Response:
    """Return `response` if it has `status`, else fail the scenario with what came back."""
    if response.status_code != status:
        raise FlowFailed(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}, expected {status}: {response.text[:300]}"
        )
    return response


class LoginForm(HTMLParser):
    """The first form of a page: its action and named inputs, as a browser would submit them."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "form" and self.action is None:
            self.action, self._inside = values.get("action", ""), True
        elif tag == "input" and self._inside and values.get("name"):
            self.fields[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False


async def submit_login(browser: httpx.AsyncClient, page: httpx.Response) -> httpx.Response:
    """Fill in and post the simulator's login form, as a person in a browser would."""
    form = LoginForm()
    form.feed(page.text)
    if form.action is None:
        raise FlowFailed("the simulator's login page has no form")
    fields = form.fields | {"username": SIM_USER, "password": SIM_PASSWORD, "action": "login"}
    return await browser.post(
        urljoin(str(page.url), form.action), data=fields, headers={"Accept": "text/html"}
    )


def code_from_redirect(location: str) -> tuple[str, str]:
    """`(code, state)` from the institution's redirect to the callback URL."""
    query = parse_qs(urlsplit(location).query)
    if "code" not in query or "state" not in query:
        raise FlowFailed(f"redirect without code and state: {location[:200]}")
    return query["code"][0], query["state"][0]


@dataclass
class System:
    """The live processes of one scenario and what a client needs to use them."""

    api_url: str
    simulator_url: str
    callback_url: str | None
    redirect_uri: str
    client_id: str
    client_secret: str
    headers: dict[str, str]
    provider_id: str

    def basic_auth(self) -> dict[str, str]:
        """The registered app's `Authorization: Basic` header for the token endpoint."""
        raw = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}

    def authorize_form(self, state: str) -> dict[str, str]:
        """The simulator's login form as a browser posts it for `state`."""
        return {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "state": state,
            "username": SIM_USER,
            "password": SIM_PASSWORD,
            "action": "login",
        }


async def start_system(ctx: FlowContext, *, with_callback: bool) -> System:
    """Start simulator, API (and callback server), create a user, log in, create a provider."""
    sim_port, api_port, callback_port = free_port(), free_port(), free_port()
    client_id, client_secret = secrets.token_hex(16), secrets.token_hex(32)
    simulator_url = f"https://127.0.0.1:{sim_port}"
    api_url = f"https://127.0.0.1:{api_port}"
    # The redirect URI is the callback server's address even when no callback server runs:
    # the setup then carries code and state to the API itself.
    redirect_uri = f"https://127.0.0.1:{callback_port}"
    sim_env = {
        "SIMULATOR_CLIENT_ID": client_id,
        "SIMULATOR_CLIENT_SECRET": client_secret,
        "SIMULATOR_REDIRECT_URIS": redirect_uri,
        "SIMULATOR_RATE_LIMIT": "1000000",
    }
    ctx.start(
        "simulator",
        [sys.executable, "-m", "dashtam", "simulator", "--port", str(sim_port)],
        port=sim_port,
        env=ctx.server_env(sim_env),
        ready_path="/control/clock",
    )
    api_env = RELAXED | {
        "SCHWAB_APP_KEY": client_id,
        "SCHWAB_APP_SECRET": client_secret,
        "SCHWAB_REDIRECT_URI": redirect_uri,
        "SCHWAB_AUTH_BASE_URL": f"{simulator_url}/v1/oauth",
        "SCHWAB_API_BASE_URL": f"{simulator_url}/trader/v1",
        "PROVIDER_CA_FILE": str(ctx.ca_file.resolve()),
    }
    ctx.start(
        "dashtam",
        dashtam_command(api_port),
        port=api_port,
        env=ctx.server_env(api_env),
        ready_path="/health/live",
    )
    callback_url = None
    if with_callback:
        ctx.start(
            "callback",
            [sys.executable, "-m", "dashtam", "callback", "--port", str(callback_port)],
            port=callback_port,
            env=ctx.server_env({"CALLBACK_API_BASE_URL": api_url}),
            ready_path="/health/live",
        )
        callback_url = redirect_uri
    (user,) = await create_users(ctx.database_url, ctx.base_env, count=1, prefix="connect")
    api = await ctx.client(api_url)
    login = expect(
        await api.post(
            f"{API}/auth/login", json={"email": user.email, "password": BENCH_USER_PASSWORD}
        ),
        200,
    )
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    created = expect(
        await api.post(
            f"{API}/providers", json={"provider_key": "schwab", "alias": "Bench"}, headers=headers
        ),
        201,
    )
    return System(
        api_url=api_url,
        simulator_url=simulator_url,
        callback_url=callback_url,
        redirect_uri=redirect_uri,
        client_id=client_id,
        client_secret=client_secret,
        headers=headers,
        provider_id=created.json()["id"],
    )


# --- connect_round_trip -----------------------------------------------------------------------


async def connect_journey(ctx: FlowContext) -> FlowStep:
    """Time start → login page → login form → callback server → API → tokens stored."""
    system = await start_system(ctx, with_callback=True)
    ctx.state["system"] = system
    api = await ctx.client(system.api_url)
    # Like a browser: follows redirects and keeps connections to each origin alive.
    browser = await ctx.client(follow_redirects=True, timeout=60)
    path = f"{API}/providers/{system.provider_id}/authorization"

    async def run() -> None:
        started = expect(await api.post(path, headers=system.headers), 201)
        page = expect(
            await browser.get(started.json()["authorization_url"], headers={"Accept": "text/html"}),
            200,
        )
        result = expect(await submit_login(browser, page), 200)
        if 'data-outcome="connected"' not in result.text:
            raise FlowFailed(f"the callback page does not say connected: {result.text[:300]}")

    return FlowStep(run=run)


async def token_exchange(ctx: FlowContext) -> FlowStep:
    """Time only `POST /v1/oauth/token` (authorization code); a fresh code is fetched untimed."""
    system: System = ctx.state["system"]
    simulator = await ctx.client(system.simulator_url)
    codes: list[str] = []

    async def before() -> None:
        response = expect(
            await simulator.post(
                "/v1/oauth/authorize", data=system.authorize_form(f"bench.{uuid.uuid4().hex}")
            ),
            302,
        )
        codes.append(code_from_redirect(response.headers["location"])[0])

    async def run() -> None:
        form = {
            "grant_type": "authorization_code",
            "code": codes.pop(),
            "redirect_uri": system.redirect_uri,
        }
        body: dict[str, Any] = expect(
            await simulator.post("/v1/oauth/token", data=form, headers=system.basic_auth()), 200
        ).json()
        if "access_token" not in body:
            raise FlowFailed("the token answer has no access token")

    return FlowStep(run=run, before=before)


async def institution_hops(ctx: FlowContext) -> FlowStep:
    """Time only the institution's share of the journey: its login page and form (untimed start).

    Not Dashtam's work: these are the two requests a browser makes to the institution between
    our authorization start and the redirect to our callback. Measured next to the same bare
    exchange, they bound the journey from below before any of Dashtam's own work.
    """
    system = await start_system(ctx, with_callback=False)
    ctx.state["system"] = system
    api = await ctx.client(system.api_url)
    browser = await ctx.client(follow_redirects=False, timeout=60)
    path = f"{API}/providers/{system.provider_id}/authorization"
    pages: list[str] = []

    async def before() -> None:
        started = expect(await api.post(path, headers=system.headers), 201)
        pages.append(started.json()["authorization_url"])

    async def run() -> None:
        page = expect(await browser.get(pages.pop(), headers={"Accept": "text/html"}), 200)
        redirect = await submit_login(browser, page)
        if redirect.status_code not in (302, 303):
            raise FlowFailed(f"the login form answered {redirect.status_code}, not a redirect")
        code_from_redirect(redirect.headers["location"])

    return FlowStep(run=run, before=before)


# --- refresh_vs_plain -------------------------------------------------------------------------


async def connected_system(ctx: FlowContext) -> System:
    """A system whose provider is connected (the callback is handed to the API directly)."""
    system = await start_system(ctx, with_callback=False)
    api = await ctx.client(system.api_url)
    simulator = await ctx.client(system.simulator_url)
    path = f"{API}/providers/{system.provider_id}/authorization"
    started = expect(await api.post(path, headers=system.headers), 201)
    redirect = expect(
        await simulator.post(
            "/v1/oauth/authorize", data=system.authorize_form(started.json()["state"])
        ),
        302,
    )
    code, state = code_from_redirect(redirect.headers["location"])
    expect(await api.get(f"{path}/callback", params={"code": code, "state": state}), 200)
    return system


async def forced_refresh(ctx: FlowContext) -> FlowStep:
    """Time `PATCH …/authorization`; before each, forget the last refresh time (untimed).

    Dashtam answers a "refresh now" within 10 s of the previous refresh from what it has (one
    upstream refresh per burst), so clearing `refreshed_at` is what makes every timed request
    pay a real upstream refresh.
    """
    from dashtam.core.config import Settings
    from dashtam.core.database import create_engine
    from dashtam.models.provider import ProviderToken

    system = await connected_system(ctx)
    ctx.state["system"] = system
    api = await ctx.client(system.api_url)
    engine = create_engine(ctx.database_url, Settings(environment="test"))
    ctx.cleanup.push_async_callback(engine.dispose)
    path = f"{API}/providers/{system.provider_id}/authorization"
    tokens = ProviderToken.__table__  # type: ignore[attr-defined]
    # Core with the model's column types: the id binds right on both backends.
    forget = (
        update(tokens)
        .where(tokens.c.provider_id == uuid.UUID(system.provider_id))
        .values(refreshed_at=None)
    )

    async def before() -> None:
        async with engine.begin() as connection:
            await connection.execute(forget)

    async def run() -> None:
        expect(await api.patch(path, headers=system.headers), 200)

    return FlowStep(run=run, before=before)


async def plain_status(ctx: FlowContext) -> FlowStep:
    """Time `GET …/authorization` on the same provider (no upstream call)."""
    system: System = ctx.state["system"]
    api = await ctx.client(system.api_url)
    path = f"{API}/providers/{system.provider_id}/authorization"

    async def run() -> None:
        expect(await api.get(path, headers=system.headers), 200)

    return FlowStep(run=run)


SCENARIOS = (
    Scenario(
        name="connect_round_trip",
        description="connect journey (start → simulator login → callback server → tokens "
        "stored) vs the bare simulator code exchange it contains",
        subject=PythonFlow(setup=connect_journey, min_iterations=20),
        reference=PythonFlow(setup=token_exchange, min_iterations=50),
        target=Target(min_rps_ratio=1 / 3),
        notes="rate = iterations/s of timed work, one at a time; 0.33 = the journey takes at "
        "most 3x the exchange; the same provider is re-authorized each iteration; the "
        "reference's fresh code (simulator login) is fetched untimed",
    ),
    Scenario(
        name="connect_institution_hops",
        description="the institution's login page and form (the browser's part of the connect "
        "journey at the simulator) vs the bare simulator code exchange",
        subject=PythonFlow(setup=institution_hops, min_iterations=50),
        reference=PythonFlow(setup=token_exchange, min_iterations=50),
        notes="no target: context for connect_round_trip. The journey contains these two "
        "requests plus the exchange, so its ratio to the exchange is at least 1 + this p50 "
        "ratio before any of Dashtam's own requests",
    ),
    Scenario(
        name="refresh_vs_plain",
        description="PATCH /providers/{id}/authorization (upstream token refresh) vs GET of "
        "the same (no upstream call)",
        subject=PythonFlow(setup=forced_refresh, min_iterations=50),
        reference=PythonFlow(setup=plain_status, min_iterations=50),
        target=Target(min_rps_ratio=0.5),
        notes="rate = requests/s one at a time; 0.50 = a refreshing request takes at most 2x "
        "a plain one; refreshed_at is cleared (untimed) before each PATCH so each one "
        "really refreshes upstream",
    ),
)
