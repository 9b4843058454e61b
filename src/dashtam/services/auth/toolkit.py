"""What the authentication services need besides a database session, bundled once per app.

`AuthToolkit` holds the long-lived, thread-safe pieces (settings, KV store, hashers, JWT codec);
`ClientInfo` describes who is calling; `Mailer` sends email only after the unit of work commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.config import Settings
from dashtam.core.database import after_commit
from dashtam.core.kv import KeyValueStore
from dashtam.core.logging import log_event
from dashtam.core.passwords import PasswordHasher
from dashtam.core.tokens import (
    AccessTokenCodec,
    KeyedHasher,
    build_access_token_codec,
    build_keyed_hasher,
)
from dashtam.models.auth import IP_MAX_LENGTH, USER_AGENT_MAX_LENGTH

logger = logging.getLogger("dashtam.auth")

#: Keyed-hash purposes: a digest made for one can never match another.
PURPOSE_REFRESH = "refresh"
PURPOSE_VERIFICATION = "email-verification"
PURPOSE_RESET = "password-reset"
PURPOSE_LOGIN_IDENTIFIER = "login-identifier"


def normalize_email(email: str) -> str:
    """The canonical form stored and compared: trimmed and lower-cased."""
    return email.strip().lower()


@dataclass(frozen=True)
class AuthToolkit:
    """Long-lived collaborators of the auth services (one per application)."""

    settings: Settings
    kv: KeyValueStore
    passwords: PasswordHasher
    keyed: KeyedHasher
    codec: AccessTokenCodec

    @property
    def session_lifetime(self) -> timedelta:
        """Absolute lifetime of a login session (and of its refresh tokens)."""
        return timedelta(days=self.settings.refresh_token_ttl_days)

    @property
    def verification_ttl(self) -> timedelta:
        """Lifetime of an email verification token."""
        return timedelta(hours=self.settings.verification_token_ttl_hours)

    @property
    def reset_ttl(self) -> timedelta:
        """Lifetime of a password reset token."""
        return timedelta(minutes=self.settings.reset_token_ttl_minutes)


def build_auth_toolkit(settings: Settings, kv: KeyValueStore) -> AuthToolkit:
    """Build the toolkit (secrets must be filled in: `settings.ensure_secrets()`)."""
    return AuthToolkit(
        settings=settings,
        kv=kv,
        passwords=PasswordHasher(),
        keyed=build_keyed_hasher(settings),
        codec=build_access_token_codec(settings),
    )


@dataclass(frozen=True)
class ClientInfo:
    """Where a request came from, for sessions and security events (lengths already capped)."""

    ip_address: str | None = None
    user_agent: str | None = None
    request_id: str | None = None

    @classmethod
    def of(
        cls, *, ip_address: str | None, user_agent: str | None, request_id: str | None
    ) -> ClientInfo:
        """Build one, truncating values to what the columns hold."""
        return cls(
            ip_address=ip_address[:IP_MAX_LENGTH] if ip_address else None,
            user_agent=user_agent[:USER_AGENT_MAX_LENGTH] if user_agent else None,
            request_id=request_id[:128] if request_id else None,
        )


class EmailSender(Protocol):
    """The part of `EmailService` we use."""

    async def send_template(self, to: str, template: str, **context: object) -> None:
        """Send a templated email; must not raise."""


#: Schedules `func(*args, **kwargs)` to run later, e.g. `BackgroundTasks.add_task`.
Defer = Callable[..., Any]


async def _deliver(email: EmailSender, to: str, template: str, context: dict[str, Any]) -> None:
    try:
        await email.send_template(to, template, **context)
    except Exception as exc:  # the service promises not to raise; a broken one still must not
        log_event(
            logger,
            "auth.email.failed",
            logging.ERROR,
            template=template,
            error_type=type(exc).__name__,
        )


@dataclass(frozen=True)
class Mailer:
    """Sends templated email after the session commits, off the response path."""

    email: EmailSender
    defer: Defer

    def send_after_commit(
        self, session: AsyncSession, *, to: str, template: str, **context: Any
    ) -> None:
        """Queue an email that goes out only if and after `session` commits.

        On rollback the email is dropped; after the commit it is handed to `defer`, so the
        response is not held up by a slow mail relay and a failing relay cannot fail it.
        """
        email, defer = self.email, self.defer

        def hook() -> None:
            defer(_deliver, email, to, template, dict(context))

        after_commit(session, hook)
