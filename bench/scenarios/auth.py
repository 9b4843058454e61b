"""Authentication benchmarks: password login, the authenticated hot path, token refresh.

* `auth_login`: `POST /api/v1/auth/login` next to raw argon2id verifications on the same cores;
  a login cannot beat the hash, so the ratio says how much Dashtam adds around it.
* `auth_me`: `GET /api/v1/auth/me` next to a bare app verifying the same JWT and reading the
  same row (`bench.reference.auth`); meant for `--backend postgres`.
* `auth_refresh`: `POST /api/v1/auth/refresh` with 10,000 live refresh tokens next to the same
  with 100: the claim is one indexed `UPDATE`, so the cost must not grow with the table.

Users are inserted straight into the database (`bench.seeding`); rate limits and the lockout
are raised through the API's environment so the load measures work, not 429s.
"""

from __future__ import annotations

import asyncio

from bench.scenarios.base import (
    DashtamHttp,
    FunctionRef,
    HttpLoad,
    HttpRequest,
    ReferenceHttp,
    Scenario,
    SetupContext,
    Target,
    TokenChain,
    bearer,
    json_body,
)
from bench.seeding import BENCH_USER_PASSWORD, SeededUser, create_users, seed_refresh_tokens

LOGIN_PATH = "/api/v1/auth/login"
ME_PATH = "/api/v1/auth/me"
REFRESH_PATH = "/api/v1/auth/refresh"

#: Per-IP and per-user limits far above what two cores can serve, and a lockout that never
#: trips (only failures count toward it; a failure would already make the run invalid).
RELAXED_LIMITS = {
    "RATE_LIMIT_LOGIN": "1000000/minute",
    "RATE_LIMIT_USER": "1000000/minute",
    "LOGIN_LOCKOUT_THRESHOLD": "1000000",
}

#: Distinct accounts round-robin, so per-account state (lockout counters, per-user limits,
#: cached sessions) is spread like many clients would spread it.
LOGIN_USERS = 8
ME_USERS = 16
#: Logins are argon2-bound (~100 ms of both cores each): a few connections saturate them.
LOGIN_CONNECTIONS = 4
#: Seconds each side of `auth_login` is measured at least (see `Scenario.min_duration_s`).
LOGIN_MIN_DURATION_S = 30
#: Each refresh chain is one login session; the warm-up and the measurement get their own,
#: with a spare per wrk thread (see `bench.runner.chain_seeds`; up to 4 threads covered).
REFRESH_CONNECTIONS = 20
REFRESH_SEEDS = 2 * (REFRESH_CONNECTIONS + 4)
#: Captures the next single-use token from a `TokenResponse` body.
NEXT_REFRESH_TOKEN = '"refresh_token"%s*:%s*"([^"]+)"'


def _users(ctx: SetupContext, count: int, prefix: str) -> list[SeededUser]:
    return asyncio.run(create_users(ctx.database_url, ctx.env, count=count, prefix=prefix))


def login_requests(emails: list[str]) -> tuple[HttpRequest, ...]:
    """One login request per account, sent round-robin."""
    requests = []
    for email in emails:
        headers, body = json_body({"email": email, "password": BENCH_USER_PASSWORD})
        requests.append(HttpRequest("POST", LOGIN_PATH, headers=headers, body=body))
    return tuple(requests)


def login_load(ctx: SetupContext) -> HttpLoad:
    """Verified users straight in the database; logins round-robin over them."""
    users = _users(ctx, LOGIN_USERS, "login")
    return HttpLoad(login_requests([user.email for user in users]))


def me_load(ctx: SetupContext) -> HttpLoad:
    """Users in the database, one real API login each; `/me` round-robin over their tokens."""
    users = _users(ctx, ME_USERS, "me")
    tokens = []
    with ctx.client() as client:
        for request in login_requests([user.email for user in users]):
            response = client.post(
                request.path, content=request.body, headers=dict(request.headers)
            )
            response.raise_for_status()
            tokens.append(response.json()["access_token"])
    ctx.state["tokens"] = tokens
    return HttpLoad(tuple(HttpRequest("GET", ME_PATH, headers=bearer(t)) for t in tokens))


def me_reference_load(ctx: SetupContext) -> HttpLoad:
    """The same tokens against the bare app's `/me` (same database, same users)."""
    return HttpLoad(
        tuple(HttpRequest("GET", "/me", headers=bearer(t)) for t in ctx.state["tokens"])
    )


def refresh_chain_load(seeds: list[str]) -> HttpLoad:
    """`POST /refresh`, each request spending the token the previous answer returned."""
    headers, body = json_body({"refresh_token": "{token}"})
    return HttpLoad(
        (HttpRequest("POST", REFRESH_PATH, headers=headers, body=body),),
        probe=False,
        chain=TokenChain(seeds=tuple(seeds), next_token=NEXT_REFRESH_TOKEN),
    )


def refresh_load(live_tokens: int) -> DashtamHttp:
    """Dashtam with `live_tokens` live refresh tokens of which the load spends its seeds.

    Background tokens sit 100 to a session (cheap to create, never touched); every seed gets
    its own session, because a refresh also updates its session's row and chains sharing one
    would queue on that row lock, which no real client population does.
    """
    if live_tokens < REFRESH_SEEDS:
        raise ValueError(f"need at least {REFRESH_SEEDS} live tokens (the chain seeds)")

    def hook(ctx: SetupContext) -> HttpLoad:
        (user,) = _users(ctx, 1, f"refresh{live_tokens}")

        async def seed() -> list[str]:
            await seed_refresh_tokens(
                ctx.database_url,
                ctx.env,
                user_id=user.id,
                count=live_tokens - REFRESH_SEEDS,
                per_session=100,
            )
            return await seed_refresh_tokens(
                ctx.database_url, ctx.env, user_id=user.id, count=REFRESH_SEEDS
            )

        return refresh_chain_load(asyncio.run(seed()))

    return DashtamHttp(load=hook)


SCENARIOS = (
    Scenario(
        name="auth_login",
        description="POST /api/v1/auth/login vs raw argon2id verifications/s (pwdlib "
        "defaults, one process per core)",
        subject=DashtamHttp(load=login_load, env=RELAXED_LIMITS),
        reference=FunctionRef(factory="bench.reference.functions:argon2_verify"),
        target=Target(min_rps_ratio=0.85),
        connections=LOGIN_CONNECTIONS,
        timeout_s=30.0,
        # ~10 logins/s: 10 s windows swung 0.76-0.89 run to run, 30 s ones 0.91-0.94.
        min_duration_s=LOGIN_MIN_DURATION_S,
        notes=f"{LOGIN_USERS} verified users round-robin; login/lockout limits raised via env; "
        "each login = 1 argon2id verify + session and refresh-token INSERTs + security event",
    ),
    Scenario(
        name="auth_me",
        description="GET /api/v1/auth/me vs a bare app verifying the same JWT and reading the "
        "same user row (raw driver)",
        subject=DashtamHttp(load=me_load, env=RELAXED_LIMITS),
        reference=ReferenceHttp(app="bench.reference.auth:create_app", load=me_reference_load),
        target=Target(min_rps_ratio=0.6, max_p99_ratio=4.0),
        notes=f"{ME_USERS} users/tokens round-robin; RATE_LIMIT_USER raised via env; meant for "
        "--backend postgres (Dashtam also checks the session row in the same SELECT and counts the "
        "per-user rate limit, which the reference does not)",
    ),
    Scenario(
        name="auth_refresh",
        description="POST /api/v1/auth/refresh with 10,000 live refresh tokens (dashtam) vs "
        "100 (reference)",
        subject=refresh_load(10_000),
        reference=refresh_load(100),
        target=Target(min_rps_ratio=0.8),
        connections=REFRESH_CONNECTIONS,
        notes="both sides are Dashtam on fresh stores; every request spends a never-used token "
        "(each answer's token feeds the connection's next request, so the live count stays "
        "put); ratio ~1 = refresh cost flat in the number of live tokens",
    ),
)
