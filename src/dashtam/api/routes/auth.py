"""`/auth`: registration, email verification, login, token refresh, logout, the caller's
account and sessions. HTTP only: every decision is made in `dashtam.services.auth`."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter

from dashtam.api.deps import (
    AuthToolkitDep,
    ClientDep,
    CurrentAuth,
    CurrentUser,
    MailerDep,
    SessionDep,
    SessionFactoryDep,
    ip_rate_limit,
)
from dashtam.core.errors import PROBLEM_CONTENT_TYPE, AppError, TooManyRequests, Unauthorized
from dashtam.core.types import utcnow
from dashtam.schemas.auth import (
    ChangePasswordRequest,
    EmailRequest,
    LoginRequest,
    LoginResponse,
    LogoutRequest,
    MessageResponse,
    ProblemResponse,
    RefreshRequest,
    RegisterRequest,
    SessionList,
    SessionResponse,
    TokenResponse,
    UpdateMeRequest,
    UserResponse,
    VerifyEmailRequest,
)
from dashtam.services.auth import login as login_service
from dashtam.services.auth import passwords, profile, registration, sessions
from dashtam.services.auth.errors import (
    AccountDisabled,
    EmailNotVerified,
    InvalidAccessToken,
    InvalidCredentials,
    InvalidPassword,
    InvalidRefreshToken,
    InvalidVerificationToken,
    SessionNotFound,
    TooManyAttempts,
    WeakPassword,
)
from dashtam.services.auth.principal import UserProfile
from dashtam.services.auth.sessions import TokenPair

router = APIRouter(prefix="/auth", tags=["auth"])

REGISTER_MESSAGE = "Thanks. Check your inbox: we sent an email to that address with the next step."
RESEND_MESSAGE = (
    "If that address belongs to an account awaiting verification, a new verification email "
    "is on its way."
)
VERIFIED_MESSAGE = "Your email address is verified. You can log in now."


class _Unauthenticated(Unauthorized):
    """Documentation only: the bearer token is missing."""

    code = "not_authenticated"


def problem_responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the problems a route can answer, grouped by status."""
    codes: dict[int, list[str]] = {}
    for error in errors:
        codes.setdefault(error.status, [])
        if error.code not in codes[error.status]:
            codes[error.status].append(error.code)
    return {
        status: {
            "model": ProblemResponse,
            "content": {PROBLEM_CONTENT_TYPE: {}},
            "description": "Problem codes: " + ", ".join(f"`{c}`" for c in names),
        }
        for status, names in sorted(codes.items())
    }


#: Every route behind `CurrentAuth` can answer these.
_AUTHENTICATED: tuple[type[AppError], ...] = (
    _Unauthenticated,
    InvalidAccessToken,
    TooManyRequests,
)


def _authenticated(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    return problem_responses(*_AUTHENTICATED, *errors)


def user_response(user: UserProfile) -> UserResponse:
    """The public view of an account."""
    return UserResponse(
        id=user.id,
        email=user.email,
        name=user.name,
        email_verified=user.email_verified,
        is_active=user.is_active,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


def _token_fields(tokens: TokenPair) -> dict[str, Any]:
    expires_in, refresh_expires_in = tokens.seconds_left(utcnow())
    return {
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "expires_in": expires_in,
        "refresh_expires_in": refresh_expires_in,
    }


def _session_items(items: Iterable[sessions.SessionInfo]) -> list[SessionResponse]:
    return [
        SessionResponse(
            id=item.id,
            user_agent=item.user_agent,
            ip_address=item.ip_address,
            created_at=item.created_at,
            last_used_at=item.last_used_at,
            expires_at=item.expires_at,
            is_current=item.is_current,
        )
        for item in items
    ]


@router.post(
    "/register",
    status_code=202,
    response_model=MessageResponse,
    responses=problem_responses(WeakPassword, TooManyAttempts),
    dependencies=[ip_rate_limit("register", lambda s: s.rate_limit_register)],
)
async def register(
    body: RegisterRequest,
    session: SessionDep,
    toolkit: AuthToolkitDep,
    mailer: MailerDep,
) -> MessageResponse:
    """Create an account and email a verification token (same answer for taken emails)."""
    await registration.register(
        session,
        toolkit,
        mailer,
        email=str(body.email),
        password=body.password.get_secret_value(),
        name=body.name,
    )
    return MessageResponse(message=REGISTER_MESSAGE)


@router.post(
    "/verification-emails",
    status_code=202,
    response_model=MessageResponse,
    responses=problem_responses(TooManyAttempts),
    dependencies=[ip_rate_limit("resend", lambda s: s.rate_limit_resend)],
)
async def resend_verification(
    body: EmailRequest,
    session: SessionDep,
    toolkit: AuthToolkitDep,
    mailer: MailerDep,
) -> MessageResponse:
    """Send a new verification email (same answer for unknown or verified emails)."""
    await registration.resend_verification(session, toolkit, mailer, email=str(body.email))
    return MessageResponse(message=RESEND_MESSAGE)


@router.post(
    "/verify-email",
    response_model=MessageResponse,
    responses=problem_responses(InvalidVerificationToken),
)
async def verify_email(
    body: VerifyEmailRequest,
    session: SessionDep,
    toolkit: AuthToolkitDep,
    client: ClientDep,
) -> MessageResponse:
    """Verify an email address with the token from the verification email."""
    await registration.verify_email(session, toolkit, token=body.token, client=client)
    return MessageResponse(message=VERIFIED_MESSAGE)


@router.post(
    "/login",
    response_model=LoginResponse,
    responses=problem_responses(
        InvalidCredentials, EmailNotVerified, AccountDisabled, TooManyAttempts
    ),
    dependencies=[ip_rate_limit("login", lambda s: s.rate_limit_login)],
)
async def login(
    body: LoginRequest,
    factory: SessionFactoryDep,
    toolkit: AuthToolkitDep,
    client: ClientDep,
) -> LoginResponse:
    """Log in with email and password; returns an access and a refresh token."""
    result = await login_service.login(
        factory=factory,
        tk=toolkit,
        email=str(body.email),
        password=body.password.get_secret_value(),
        client=client,
    )
    return LoginResponse(**_token_fields(result.tokens), user=user_response(result.user))


@router.post(
    "/refresh",
    response_model=TokenResponse,
    responses=problem_responses(InvalidRefreshToken),
)
async def refresh(
    body: RefreshRequest,
    factory: SessionFactoryDep,
    toolkit: AuthToolkitDep,
    client: ClientDep,
) -> TokenResponse:
    """Exchange a refresh token for a new pair (the presented token is spent)."""
    tokens = await sessions.refresh_session(
        factory=factory, tk=toolkit, refresh_token=body.refresh_token, client=client
    )
    return TokenResponse(**_token_fields(tokens))


@router.post("/logout", status_code=204, responses=_authenticated())
async def logout(
    auth: CurrentAuth,
    session: SessionDep,
    toolkit: AuthToolkitDep,
    client: ClientDep,
    body: LogoutRequest | None = None,
) -> None:
    """End the current session; its access and refresh tokens stop working at once."""
    await sessions.logout(
        session,
        toolkit,
        auth=auth,
        refresh_token=body.refresh_token if body else None,
        client=client,
    )


@router.get("/me", response_model=UserResponse, responses=_authenticated())
async def read_me(user: CurrentUser) -> UserResponse:
    """The caller's account."""
    return user_response(user)


@router.patch("/me", response_model=UserResponse, responses=_authenticated())
async def update_me(body: UpdateMeRequest, user: CurrentUser, session: SessionDep) -> UserResponse:
    """Change the caller's display name."""
    updated = await profile.rename(session, user_id=user.id, name=body.name)
    if updated is None:
        raise InvalidAccessToken()
    return user_response(updated)


@router.patch(
    "/me/password",
    status_code=204,
    responses=_authenticated(InvalidPassword, WeakPassword, TooManyAttempts),
)
async def change_password(
    body: ChangePasswordRequest,
    auth: CurrentAuth,
    factory: SessionFactoryDep,
    toolkit: AuthToolkitDep,
    mailer: MailerDep,
    client: ClientDep,
) -> None:
    """Change the password; every other session of the caller is revoked."""
    await passwords.change_password(
        factory=factory,
        tk=toolkit,
        mailer=mailer,
        auth=auth,
        current_password=body.current_password.get_secret_value(),
        new_password=body.new_password.get_secret_value(),
        client=client,
    )


@router.get("/sessions", response_model=SessionList, responses=_authenticated())
async def list_sessions(auth: CurrentAuth, session: SessionDep) -> SessionList:
    """The caller's live sessions, newest first."""
    items, has_more = await sessions.list_sessions(
        session, user_id=auth.user_id, current_session_id=auth.session_id
    )
    return SessionList(items=_session_items(items), has_more=has_more)


@router.delete("/sessions/{session_id}", status_code=204, responses=_authenticated(SessionNotFound))
async def revoke_session(
    session_id: uuid.UUID,
    auth: CurrentAuth,
    session: SessionDep,
    toolkit: AuthToolkitDep,
    client: ClientDep,
) -> None:
    """Revoke one of the caller's sessions (404 when it is not the caller's)."""
    await sessions.revoke_session(session, toolkit, auth=auth, session_id=session_id, client=client)


@router.delete("/sessions", status_code=204, responses=_authenticated())
async def revoke_other_sessions(
    auth: CurrentAuth,
    session: SessionDep,
    toolkit: AuthToolkitDep,
    client: ClientDep,
) -> None:
    """Revoke every session of the caller except the current one."""
    await sessions.revoke_other_sessions(session, toolkit, auth=auth, client=client)
