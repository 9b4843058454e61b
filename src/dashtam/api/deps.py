"""FastAPI dependencies shared by every router: settings, the unit-of-work session, the KV store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.budget import RequestBudget
from dashtam.core.config import Settings
from dashtam.core.database import SessionFactory, session_scope
from dashtam.core.errors import AppError, TooManyRequests, Unauthorized
from dashtam.core.kv import KeyValueStore, RedisKeyValueStore
from dashtam.core.observability import metrics
from dashtam.core.ratelimit import RateLimiter, client_ip, rate_limit_headers
from dashtam.core.request_context import current_request_id, set_user_id
from dashtam.core.state import AppResources, statement_scope
from dashtam.core.tokens import InvalidAccessToken
from dashtam.core.types import utcnow
from dashtam.services.auth.errors import TooManyAttempts
from dashtam.services.auth.principal import AuthContext, UserProfile
from dashtam.services.auth.profile import load_live_profile
from dashtam.services.auth.sessions import authenticate
from dashtam.services.auth.toolkit import AuthToolkit, ClientInfo, Mailer, build_auth_toolkit
from dashtam.services.email import build_email_service


async def get_resources(request: Request) -> AppResources:
    """The application's resources, built by the lifespan."""
    resources: AppResources = request.app.state.resources
    return resources


ResourcesDep = Annotated[AppResources, Depends(get_resources)]


async def get_settings(resources: ResourcesDep) -> Settings:
    """The running application's settings."""
    return resources.settings


async def get_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    """One unit of work per request: commit on success, roll back on error."""
    async with session_scope(resources.session_factory) as session:
        yield session


async def get_kv(resources: ResourcesDep) -> KeyValueStore:
    """The key/value store (Redis or in-process)."""
    return resources.kv


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for routes that only read.

    PostgreSQL: autocommit, so no BEGIN/COMMIT round trips. Reads lose nothing by it: under
    READ COMMITTED every statement takes its own snapshot inside a transaction too. SQLite: an
    ordinary unit of work.
    """
    resources: AppResources = request.app.state.resources
    async with statement_scope(resources) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": commit (and after-commit hooks) before the response is sent. With the
# default request scope FastAPI commits only after the client already has its 2xx, so a client
# could use a token the database does not hold yet, or be told "done" for a failed commit.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
#: For GET routes: no transaction around their reads on PostgreSQL (see `get_read_session`).
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
KVDep = Annotated[KeyValueStore, Depends(get_kv)]


# --- authentication ---------------------------------------------------------------------------


async def get_session_factory(resources: ResourcesDep) -> SessionFactory:
    """For the few flows that run their own units of work (login, refresh, password changes)."""
    return resources.session_factory


def auth_toolkit(resources: AppResources) -> AuthToolkit:
    """The auth services' collaborators, built once per application."""
    toolkit: AuthToolkit | None = resources.extras.get("auth_toolkit")
    if toolkit is None:
        toolkit = build_auth_toolkit(resources.settings, resources.kv)
        resources.extras["auth_toolkit"] = toolkit
    return toolkit


def rate_limiter(resources: AppResources) -> RateLimiter:
    """The application's rate limiter (a private one if the resources were built without it)."""
    limiter: RateLimiter | None = resources.extras.get("rate_limiter")
    if limiter is None:
        settings = resources.settings
        limiter = RateLimiter(redis_url=settings.redis_url, enabled=settings.rate_limit_enabled)
        resources.extras["rate_limiter"] = limiter
        resources.add_closer(limiter.aclose)
    return limiter


def request_budget(resources: AppResources) -> RequestBudget:
    """The per-user request budget, built once per application."""
    budget: RequestBudget | None = resources.extras.get("request_budget")
    if budget is None:
        # The sliding-window limiter of the per-user budget (else the general one) gives the
        # switch, the outage state and the in-process counters; the KV store's Redis client
        # carries the shared counters.
        limiter = resources.extras.get("user_rate_limiter") or rate_limiter(resources)
        redis = resources.kv.client if isinstance(resources.kv, RedisKeyValueStore) else None
        budget = RequestBudget(limiter, redis)
        resources.extras["request_budget"] = budget
    return budget


async def get_auth_toolkit(resources: ResourcesDep) -> AuthToolkit:
    """The auth services' collaborators, built once per application."""
    return auth_toolkit(resources)


async def get_rate_limiter(resources: ResourcesDep) -> RateLimiter:
    """The application's rate limiter (a private one if the resources were built without it)."""
    return rate_limiter(resources)


async def get_client_info(request: Request, settings: SettingsDep) -> ClientInfo:
    """Who is calling: IP (`X-Forwarded-For` only from trusted proxies), user agent, request id."""
    peer = request.client.host if request.client else None
    forwarded = ",".join(request.headers.getlist("x-forwarded-for")) or None
    return ClientInfo.of(
        ip_address=client_ip(peer, forwarded, settings.trusted_proxies),
        user_agent=request.headers.get("user-agent"),
        request_id=current_request_id(),
    )


async def get_mailer(resources: ResourcesDep, background: BackgroundTasks) -> Mailer:
    """Sends email after the unit of work commits, as a background task of the response."""
    email = resources.extras.get("email")
    if email is None:
        email = build_email_service(resources.settings)
        resources.extras["email"] = email
    return Mailer(email=email, defer=background.add_task)


SessionFactoryDep = Annotated[SessionFactory, Depends(get_session_factory)]
AuthToolkitDep = Annotated[AuthToolkit, Depends(get_auth_toolkit)]
RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]
ClientDep = Annotated[ClientInfo, Depends(get_client_info)]
MailerDep = Annotated[Mailer, Depends(get_mailer)]


def ip_rate_limit(action: str, rule: Callable[[Settings], str]) -> Any:
    """A route dependency limiting `action` per client IP (429 `too_many_attempts`).

    Adds `RateLimit-*` headers to the response, problems included; a refusal also carries
    `Retry-After`.

    Args:
        action: The counter's name (`login`, `register` …): actions never share counters.
        rule: Picks the rule (e.g. `"10/minute"`) from the settings.
    """

    async def limit(
        client: ClientDep, settings: SettingsDep, limiter: RateLimiterDep, response: Response
    ) -> AsyncIterator[None]:
        state = await limiter.hit(rule(settings), f"{action}:ip", client.ip_address or "unknown")
        headers = rate_limit_headers(state)
        if not state.allowed:
            metrics.rate_limited(action)
            raise TooManyAttempts(retry_after=state.retry_after, headers=headers)
        response.headers.update(headers)
        try:
            yield
        except AppError as error:
            # Problems (401, 422 …) are rendered from the exception, not from `response`.
            for name, value in headers.items():
                error.headers.setdefault(name, value)
            raise

    limit.__name__ = f"limit_{action}_per_ip"
    return Depends(limit)


_bearer = HTTPBearer(auto_error=False, description="An access token from `POST /auth/login`.")


def _bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("A bearer access token is required.", code="not_authenticated")
    return credentials.credentials


async def _spend_budget(resources: AppResources, user_id: uuid.UUID, response: Response) -> None:
    """Count the request against the user's budget: 429 `rate_limited` when it is spent."""
    state = await request_budget(resources).hit(resources.settings.rate_limit_user, str(user_id))
    headers = rate_limit_headers(state)
    if not state.allowed:
        metrics.rate_limited("user")
        raise TooManyRequests(
            "Too many requests for this account; slow down.",
            retry_after=state.retry_after,
            headers=headers,
        )
    response.headers.update(headers)


# The two dependencies below run on every authenticated request: they reach the application's
# resources directly instead of through chains of sub-dependencies (FastAPI resolves each one
# on every request), and neither depends on the other.


async def get_current_auth(
    request: Request,
    response: Response,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> AuthContext:
    """Authenticate the bearer access token and apply the per-user rate limit.

    The token must verify and its session must be live (a cached check: logout, revocation and
    password changes take effect at once). No database write happens here.

    Raises:
        Unauthorized: No bearer token (`not_authenticated`), or an invalid one
            (`invalid_token`); both with `WWW-Authenticate: Bearer`.
        TooManyRequests: The user's request budget is spent (`rate_limited`).
    """
    token = _bearer_token(credentials)
    resources: AppResources = request.app.state.resources
    auth = await authenticate(
        resources.session_factory, auth_toolkit(resources), access_token=token
    )
    set_user_id(str(auth.user_id))
    await _spend_budget(resources, auth.user_id, response)
    return auth


CurrentAuth = Annotated[AuthContext, Depends(get_current_auth)]
"""The verified caller: `user_id`, `session_id` and the token claims. No database read unless
the session state is not cached. Use it when the user id is all a route needs."""


async def get_current_user(
    request: Request,
    response: Response,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> UserProfile:
    """The authenticated caller's profile, with the same checks as `get_current_auth`.

    One SELECT reads the profile and the token's session together (the database is the truth
    here, no cache round trip): 401 when the session is missing, revoked or expired, or the
    account is gone or disabled; then the per-user rate limit (429).
    """
    token = _bearer_token(credentials)
    resources: AppResources = request.app.state.resources
    claims = auth_toolkit(resources).codec.decode(token)
    profile = await load_live_profile(
        resources.engine, user_id=claims.user_id, session_id=claims.session_id, now=utcnow()
    )
    if profile is None:
        raise InvalidAccessToken()
    set_user_id(str(claims.user_id))
    await _spend_budget(resources, claims.user_id, response)
    return profile


CurrentUser = Annotated[UserProfile, Depends(get_current_user)]
"""The authenticated, active caller's profile (`id`, `email`, `name`, …): the dependency every
user-scoped route takes (token, live session, active account, per-user rate limit)."""


CurrentUserDetached = CurrentUser
"""Kept for routes that call institutions: `CurrentUser` holds no transaction either."""
