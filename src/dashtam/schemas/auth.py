"""Request and response bodies of the authentication endpoints.

Every request body forbids unknown fields (no mass assignment); passwords are `SecretStr` so
they never show up in a repr or a log line by accident.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, SecretStr, StringConstraints

from dashtam.models.user import NAME_MAX_LENGTH

#: Long enough for any password the policy accepts (128) with room for multi-byte input; the
#: policy answers `weak_password` for anything over 128, this only bounds the work.
_PASSWORD_MAX_INPUT = 1024
_TOKEN_MAX_LENGTH = 512

#: A display name: trimmed, 1–100 characters, no control characters (it ends up in emails).
Name = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=NAME_MAX_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f]+$",
    ),
]
Password = Annotated[SecretStr, Field(min_length=1, max_length=_PASSWORD_MAX_INPUT)]
OpaqueToken = Annotated[str, StringConstraints(min_length=1, max_length=_TOKEN_MAX_LENGTH)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterRequest(_Request):
    """`POST /auth/register`."""

    email: EmailStr
    password: Password
    name: Name


class EmailRequest(_Request):
    """`POST /auth/verification-emails` and `POST /password-resets`."""

    email: EmailStr


class VerifyEmailRequest(_Request):
    """`POST /auth/verify-email`."""

    token: OpaqueToken


class LoginRequest(_Request):
    """`POST /auth/login`."""

    email: EmailStr
    password: Password


class RefreshRequest(_Request):
    """`POST /auth/refresh`."""

    refresh_token: OpaqueToken


class LogoutRequest(_Request):
    """`POST /auth/logout` (the body is optional)."""

    refresh_token: OpaqueToken | None = None


class UpdateMeRequest(_Request):
    """`PATCH /auth/me`."""

    name: Name


class ChangePasswordRequest(_Request):
    """`PATCH /auth/me/password`."""

    current_password: Password
    new_password: Password


class CompleteResetRequest(_Request):
    """`PATCH /password-resets/{token}`."""

    new_password: Password


class MessageResponse(BaseModel):
    """A human-readable confirmation."""

    message: str


class UserResponse(BaseModel):
    """The caller's account."""

    id: uuid.UUID
    email: str
    name: str
    email_verified: bool
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class TokenResponse(BaseModel):
    """A new access/refresh token pair."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth token type name)
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_expires_in: int = Field(
        description="Seconds until the refresh token (and its session) expires."
    )


class LoginResponse(TokenResponse):
    """A successful login: tokens and the account."""

    user: UserResponse


class SessionResponse(BaseModel):
    """One live login session."""

    id: uuid.UUID
    user_agent: str | None
    ip_address: str | None
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    is_current: bool


class SessionList(BaseModel):
    """The caller's live sessions, newest first (bounded; `next_cursor` is always null)."""

    items: list[SessionResponse]
    next_cursor: str | None = None
    has_more: bool = False


class PasswordResetStatus(BaseModel):
    """`GET /password-resets/{token}` for a live token."""

    valid: Literal[True] = True
    expires_at: datetime


class ProblemResponse(BaseModel):
    """An RFC 9457 problem (`application/problem+json`), as documented in OpenAPI."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None = None
