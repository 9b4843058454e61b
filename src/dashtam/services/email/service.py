"""`EmailService`: render a template and hand it to the configured backend, never raising.

Email is a side effect of requests such as registration; a broken relay must not turn them into
errors (and must not reveal, by failing, whether an address has an account). Failures are
logged as `email.send.failed` and swallowed.
"""

from __future__ import annotations

import logging

from dashtam.core.config import ConfigurationError, Settings
from dashtam.core.logging import log_event
from dashtam.services.email.backends import (
    ConsoleBackend,
    EmailBackend,
    FileBackend,
    SesBackend,
    SmtpBackend,
)
from dashtam.services.email.message import EmailMessage
from dashtam.services.email.render import render_email

logger = logging.getLogger("dashtam.email")


class EmailService:
    """Sends templated emails through one backend."""

    def __init__(self, backend: EmailBackend, *, link_base_url: str, app_name: str) -> None:
        """Configure the service.

        Args:
            backend: Where messages go.
            link_base_url: Base of the links in emails (the client app or the API).
            app_name: Product name shown in emails.
        """
        self.backend = backend
        self.link_base_url = link_base_url
        self.app_name = app_name

    def __repr__(self) -> str:
        return f"EmailService(backend={self.backend.name!r})"

    async def send_template(self, to: str, template: str, **context: object) -> None:
        """Render `template` for `to` and send it; log and swallow any failure.

        Args:
            to: Recipient address.
            template: `verification`, `password_reset`, `registration_attempt` or
                `password_changed`.
            **context: Template values (`name`, `token`, optionally `expires_in`).
        """
        values: dict[str, object] = {
            "link_base_url": self.link_base_url,
            "app_name": self.app_name,
            **context,
        }
        try:
            subject, text, html = render_email(template, **values)
            await self.backend.send(EmailMessage(to=to, subject=subject, text=text, html=html))
        except Exception as exc:  # by contract: an email failure never fails the caller
            log_event(
                logger,
                "email.send.failed",
                logging.ERROR,
                template=template,
                backend=self.backend.name,
                error_type=type(exc).__name__,
            )
            return
        log_event(logger, "email.sent", template=template, backend=self.backend.name)


def build_backend(settings: Settings) -> EmailBackend:
    """The backend named by `EMAIL_BACKEND` (default: `file`, or `console` in production).

    Raises:
        ConfigurationError: SMTP without `SMTP_HOST`.
    """
    kind = settings.effective_email_backend
    sender = settings.email_from
    if kind == "file":
        assert settings.mail_dir is not None  # filled by the settings validator
        return FileBackend(settings.mail_dir, sender)
    if kind == "smtp":
        if not settings.smtp_host:
            raise ConfigurationError("EMAIL_BACKEND=smtp needs SMTP_HOST")
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return SmtpBackend(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=sender,
            username=settings.smtp_username,
            password=password,
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout,
        )
    if kind == "ses":
        return SesBackend(
            sender=sender,
            region=settings.aws_region,
            configuration_set=settings.ses_configuration_set,
        )
    return ConsoleBackend(sender)


def build_email_service(settings: Settings) -> EmailService:
    """The email service for these settings.

    Raises:
        ConfigurationError: The chosen backend is missing required settings.
    """
    backend = build_backend(settings)
    if settings.is_production and backend.name == "console":
        # Not fatal (some deployments send no email), but nobody will receive anything.
        log_event(
            logger,
            "email.backend.console_in_production",
            logging.WARNING,
            detail="emails are only logged; set EMAIL_BACKEND=smtp or ses to deliver them",
        )
    return EmailService(
        backend, link_base_url=settings.email_link_base_url, app_name=settings.app_name
    )
