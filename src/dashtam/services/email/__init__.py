"""Transactional email: templates, delivery backends and the never-raising `EmailService`."""

from dashtam.services.email.message import EmailMessage
from dashtam.services.email.service import EmailService, build_email_service

__all__ = ["EmailMessage", "EmailService", "build_email_service"]
