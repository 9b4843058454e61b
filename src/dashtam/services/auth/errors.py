"""Errors the authentication services raise, each with a stable problem `code`.

Messages are deliberately uninformative where detail would help an attacker: an unknown email
and a wrong password share one error, and every bad opaque token is just "invalid".
"""

from __future__ import annotations

from dashtam.core.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from dashtam.core.passwords import WeakPassword
from dashtam.core.tokens import InvalidAccessToken

__all__ = [
    "AccountDisabled",
    "EmailNotVerified",
    "InvalidAccessToken",
    "InvalidCredentials",
    "InvalidPassword",
    "InvalidRefreshToken",
    "InvalidResetToken",
    "InvalidVerificationToken",
    "SessionNotFound",
    "TooManyAttempts",
    "WeakPassword",
]


class InvalidCredentials(Unauthorized):
    """401: unknown email or wrong password (one answer for both)."""

    code = "invalid_credentials"
    title = "Invalid credentials"

    def __init__(self) -> None:
        super().__init__("The email or password is incorrect.")


class EmailNotVerified(Forbidden):
    """403: the password was right but the email address is not verified yet."""

    code = "email_not_verified"
    title = "Email not verified"

    def __init__(self) -> None:
        super().__init__(
            "Verify your email address first; you can request a new verification email."
        )


class AccountDisabled(Forbidden):
    """403: the password was right but the account is disabled."""

    code = "account_disabled"
    title = "Account disabled"

    def __init__(self) -> None:
        super().__init__("This account is disabled.")


class TooManyAttempts(TooManyRequests):
    """429: throttled by IP or locked out by failed logins; carries `Retry-After`."""

    code = "too_many_attempts"
    title = "Too many attempts"

    def __init__(self, *, retry_after: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(
            "Too many attempts; try again later.", retry_after=retry_after, headers=headers
        )


class InvalidRefreshToken(Unauthorized):
    """401: the refresh token is unknown, expired, spent or its session has ended."""

    code = "invalid_refresh_token"
    title = "Invalid refresh token"

    def __init__(self) -> None:
        super().__init__("The refresh token is invalid or expired; log in again.")


class InvalidVerificationToken(BadRequest):
    """400: the email verification token is unknown, expired or already used."""

    code = "invalid_token"
    title = "Invalid token"

    def __init__(self) -> None:
        super().__init__("The verification token is invalid or expired.")


class InvalidResetToken(NotFound):
    """404: the password reset token is unknown, expired, used or superseded."""

    code = "invalid_token"
    title = "Invalid token"

    def __init__(self) -> None:
        super().__init__("The password reset token is invalid or expired.")


class InvalidPassword(BadRequest):
    """400: the current password given to change it is wrong."""

    code = "invalid_password"
    title = "Invalid password"

    def __init__(self) -> None:
        super().__init__("The current password is incorrect.")


class SessionNotFound(NotFound):
    """404: no such active session, or not yours."""

    code = "session_not_found"
    title = "Session not found"

    def __init__(self) -> None:
        super().__init__("No such active session.")
