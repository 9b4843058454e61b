"""Schwab's OAuth endpoints: the login page at `/v1/oauth/authorize` and `/v1/oauth/token`.

Behaviour follows the reference (`schwab-trader-api.md` §1): exact redirect URI matching,
`C0.…@` codes that live 30 s and work once, 30-minute access tokens, refresh tokens with a hard
7-day wall from the login, and the error bodies Schwab was observed to send.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import secrets
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import quote, unquote, urlencode

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.datastructures import FormData

from dashtam.core.logging import log_event
from dashtam.simulator.deps import StateDep
from dashtam.simulator.errors import oauth_error, refresh_rejected
from dashtam.simulator.pages import CONTENT_SECURITY_POLICY, error_page, login_page
from dashtam.simulator.state import (
    ACCESS_TTL,
    CodeError,
    RefreshError,
    SimulatorState,
    token_digest,
)

router = APIRouter(prefix="/v1/oauth", tags=["oauth"])
logger = logging.getLogger("dashtam.simulator.oauth")

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _html(content: str, status: int = 200) -> HTMLResponse:
    headers = {**_NO_STORE, "Content-Security-Policy": CONTENT_SECURITY_POLICY}
    return HTMLResponse(content, status_code=status, headers=headers)


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


def _check_request(
    state: SimulatorState, client_id: str | None, redirect_uri: str | None
) -> str | None:
    """Why an authorization request must not redirect, or None when it is acceptable."""
    if not client_id or not _same(client_id, state.client_id):
        return "Unknown application (client_id)."
    if not redirect_uri or redirect_uri not in state.redirect_uris:
        # Exact string match only: a trailing slash or another port is a different URI.
        return "The redirect_uri is not registered for this application."
    return None


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def _redirect(redirect_uri: str, params: dict[str, str | None]) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v is not None}, quote_via=quote)
    separator = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(f"{redirect_uri}{separator}{query}", status_code=302, headers=_NO_STORE)


@router.get("/authorize", response_class=HTMLResponse)
async def authorize_page(request: Request, state: StateDep) -> HTMLResponse:
    """Show the login form (or an error page for an unknown app or redirect URI)."""
    params = request.query_params
    client_id, redirect_uri = params.get("client_id"), params.get("redirect_uri")
    problem = _check_request(state, client_id, redirect_uri)
    response_type = params.get("response_type")
    if problem is None and response_type not in (None, "code"):
        problem = "Only response_type=code is supported."
    if problem is not None or client_id is None or redirect_uri is None:
        return _html(error_page(problem or "Invalid request."), status=400)
    return _html(
        login_page(
            client_id=client_id,
            redirect_uri=redirect_uri,
            state=params.get("state"),
            test_users=tuple(state.dataset.users),
        )
    )


@router.post("/authorize", response_class=HTMLResponse, response_model=None)
async def authorize_submit(request: Request, state: StateDep) -> HTMLResponse | RedirectResponse:
    """Check the credentials and redirect to the app with a code (or `access_denied`)."""
    form = await request.form()
    client_id, redirect_uri = _field(form, "client_id"), _field(form, "redirect_uri")
    client_state = _field(form, "state")
    problem = _check_request(state, client_id, redirect_uri)
    if problem is not None or client_id is None or redirect_uri is None:
        return _html(error_page(problem or "Invalid request."), status=400)
    if _field(form, "action") == "cancel":
        return _redirect(redirect_uri, {"error": "access_denied", "state": client_state})
    username = _field(form, "username") or ""
    password = _field(form, "password") or ""
    user = state.dataset.users.get(username)
    # Compare even for unknown users so timing does not reveal which names exist.
    expected = user.password if user is not None else "x" * 32
    if user is None or not _same(password, expected):
        log_event(logger, "simulator.login.failed")
        page = login_page(
            client_id=client_id,
            redirect_uri=redirect_uri,
            state=client_state,
            username=username,
            error="The login ID or password you entered is incorrect.",
            test_users=tuple(state.dataset.users),
        )
        return _html(page)
    code = state.tokens.issue_code(user.username, client_id, redirect_uri, state.clock.now())
    log_event(logger, "simulator.login.succeeded", username=user.username)
    return _redirect(
        redirect_uri, {"code": code, "session": str(uuid.uuid4()), "state": client_state}
    )


def _client_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


def _client_ok(state: SimulatorState, client_id: str, secret: str) -> bool:
    if _same(client_id, state.client_id) and _same(secret, state.client_secret):
        return True
    # Some clients URL-escape key and secret before joining them (harmless for Schwab).
    return _same(unquote(client_id), state.client_id) and _same(
        unquote(secret), state.client_secret
    )


def _id_token(state: SimulatorState, username: str, client_id: str) -> str:
    now = state.clock.now()
    claims = {
        "iss": "https://api.schwabapi.com",
        "sub": hashlib.sha256(f"{state.dataset.seed}:{username}".encode()).hexdigest()[:32],
        "aud": client_id,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(hours=1)).timestamp()),
    }
    return jwt.encode(claims, state.id_token_key, algorithm="HS256")


def _token_body(
    state: SimulatorState, username: str, client_id: str, access: str, refresh: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "expires_in": int(ACCESS_TTL.total_seconds()),
        "token_type": "Bearer",
        "scope": "api",
    }
    if refresh is not None:
        body["refresh_token"] = refresh
    body["access_token"] = access
    body["id_token"] = _id_token(state, username, client_id)
    return body


@router.post("/token")
async def token(request: Request, state: StateDep) -> JSONResponse:
    """Exchange a code or a refresh token for tokens (HTTP Basic client authentication)."""
    form = await request.form()
    grant_type = _field(form, "grant_type")
    state.stats.token_grants[grant_type or "<missing>"] += 1
    credentials = _client_credentials(request)
    if credentials is None or not _client_ok(state, *credentials):
        raise oauth_error(401, "invalid_client", "Unauthorized")
    client_id = state.client_id
    body_client = _field(form, "client_id")
    if body_client is not None and not _same(body_client, client_id):
        raise oauth_error(401, "invalid_client", "Unauthorized")
    now = state.clock.now()
    if grant_type == "authorization_code":
        code = _field(form, "code")
        if not code:
            raise oauth_error(400, "invalid_request", "code is required")
        try:
            record = state.tokens.redeem_code(code, client_id, _field(form, "redirect_uri"), now)
        except CodeError as exc:
            raise oauth_error(400, "invalid_grant", str(exc)) from None
        access, refresh = state.tokens.login(record.username, client_id, now)
        log_event(logger, "simulator.token.issued", grant_type=grant_type)
        body = _token_body(state, record.username, client_id, access, refresh)
    elif grant_type == "refresh_token":
        presented = _field(form, "refresh_token")
        if not presented:
            raise oauth_error(400, "invalid_request", "refresh_token is required")
        try:
            access, refresh_out = state.tokens.use_refresh(
                presented, client_id, now, state.options.refresh_mode
            )
        except RefreshError:
            log_event(logger, "simulator.token.refresh_rejected")
            raise refresh_rejected(token_digest(presented)) from None
        username = state.tokens.access[access].username
        log_event(logger, "simulator.token.issued", grant_type=grant_type)
        body = _token_body(state, username, client_id, access, refresh_out)
    elif not grant_type:
        raise oauth_error(400, "invalid_request", "grant_type is required")
    else:
        raise oauth_error(400, "unsupported_grant_type", "Unsupported grant type")
    return JSONResponse(body, headers=_NO_STORE)
