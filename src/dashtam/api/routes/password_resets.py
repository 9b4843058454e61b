"""`/password-resets`: request a reset email, check a reset token, set a new password."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from dashtam.api.deps import (
    AuthToolkitDep,
    ClientDep,
    MailerDep,
    SessionDep,
    SessionFactoryDep,
    ip_rate_limit,
)
from dashtam.api.routes.auth import problem_responses
from dashtam.schemas.auth import (
    CompleteResetRequest,
    EmailRequest,
    MessageResponse,
    PasswordResetStatus,
)
from dashtam.services.auth import passwords
from dashtam.services.auth.errors import InvalidResetToken, TooManyAttempts, WeakPassword

router = APIRouter(prefix="/password-resets", tags=["auth"])

REQUESTED_MESSAGE = "If that address belongs to an account, a password reset email is on its way."
COMPLETED_MESSAGE = "Your password has been changed. Log in with the new password."

ResetToken = Annotated[str, Path(min_length=1, max_length=512)]


@router.post(
    "",
    status_code=202,
    response_model=MessageResponse,
    responses=problem_responses(TooManyAttempts),
    dependencies=[ip_rate_limit("reset", lambda s: s.rate_limit_reset)],
)
async def request_reset(
    body: EmailRequest,
    session: SessionDep,
    toolkit: AuthToolkitDep,
    mailer: MailerDep,
) -> MessageResponse:
    """Email a password reset token (same answer for unknown emails)."""
    await passwords.request_reset(session, toolkit, mailer, email=str(body.email))
    return MessageResponse(message=REQUESTED_MESSAGE)


@router.get(
    "/{token}",
    response_model=PasswordResetStatus,
    responses=problem_responses(InvalidResetToken),
)
async def check_reset(
    token: ResetToken, session: SessionDep, toolkit: AuthToolkitDep
) -> PasswordResetStatus:
    """Tell whether a reset token is still usable, and until when."""
    expires_at = await passwords.check_reset_token(session, toolkit, token=token)
    return PasswordResetStatus(expires_at=expires_at)


@router.patch(
    "/{token}",
    response_model=MessageResponse,
    responses=problem_responses(InvalidResetToken, WeakPassword),
)
async def complete_reset(
    token: ResetToken,
    body: CompleteResetRequest,
    factory: SessionFactoryDep,
    toolkit: AuthToolkitDep,
    mailer: MailerDep,
    client: ClientDep,
) -> MessageResponse:
    """Set a new password with a reset token; every session of the user is revoked."""
    await passwords.complete_reset(
        factory=factory,
        tk=toolkit,
        mailer=mailer,
        token=token,
        new_password=body.new_password.get_secret_value(),
        client=client,
    )
    return MessageResponse(message=COMPLETED_MESSAGE)
