"""Email delivery backends: console (log line), `.eml` files, SMTP (STARTTLS) and Amazon SES.

The console backend never writes the body: bodies carry single-use tokens and logs are
shipped and kept. In development the default `file` backend keeps every message readable
under `var/mail/` instead.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import ssl
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiosmtplib

from dashtam.core.logging import log_event
from dashtam.services.email.message import EmailMessage

if TYPE_CHECKING:
    from mypy_boto3_ses.client import SESClient

logger = logging.getLogger("dashtam.email")


class EmailBackend(Protocol):
    """Something that can deliver an `EmailMessage`; raises on failure."""

    name: str

    async def send(self, message: EmailMessage) -> None:
        """Deliver one message or raise."""


class ConsoleBackend:
    """Logs a one-line summary (recipient and subject). Nothing is delivered."""

    name = "console"

    def __init__(self, sender: str) -> None:
        """Remember the `From` address (logged for context)."""
        self.sender = sender

    async def send(self, message: EmailMessage) -> None:
        """Log `email.console` with recipient and subject — never the body (it holds tokens)."""
        log_event(
            logger,
            "email.console",
            to=message.to,
            subject=message.subject,
            note="body not logged; use EMAIL_BACKEND=file to read messages",
        )


class FileBackend:
    """Writes each message as one RFC 5322 `.eml` file (the development and test outbox).

    Names are `<epoch ns, 20 digits>-<process counter>-<random>.eml`, so sorting by name gives
    sending order and two processes never collide. Files appear atomically (temp + rename) and
    are readable by the owner only, because they contain live tokens.
    """

    name = "file"
    _counter = itertools.count()

    def __init__(self, directory: Path, sender: str) -> None:
        """Write into `directory` (created on first send)."""
        self.directory = Path(directory)
        self.sender = sender

    async def send(self, message: EmailMessage) -> None:
        """Write the message to the outbox."""
        data = message.to_mime(self.sender).as_bytes()
        path = await asyncio.to_thread(self._write, data)
        log_event(logger, "email.file.written", to=message.to, file=path.name)

    def _write(self, data: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{next(self._counter):06d}-{uuid.uuid4().hex[:12]}.eml"
        final = self.directory / name
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return final


class SmtpBackend:
    """Sends through an SMTP relay with aiosmtplib; STARTTLS is required unless turned off."""

    name = "smtp"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """Configure the relay.

        Args:
            host: Relay host name.
            port: Relay port (587 for submission with STARTTLS).
            sender: The `From` header and envelope sender.
            username: Login, when the relay wants one.
            password: Password for `username` (kept private; not in `repr`).
            starttls: Require STARTTLS (the relay must offer it, or sending fails).
            timeout: Connect and per-command timeout in seconds.
            tls_context: Custom trust (a private CA); the system trust store by default.
        """
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self._password = password
        self.starttls = starttls
        self.timeout = timeout
        self.tls_context = tls_context

    def __repr__(self) -> str:
        return f"SmtpBackend(host={self.host!r}, port={self.port}, starttls={self.starttls})"

    async def send(self, message: EmailMessage) -> None:
        """Deliver through the relay; raises `aiosmtplib.SMTPException` or `OSError` on failure."""
        await aiosmtplib.send(
            message.to_mime(self.sender),
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self._password,
            # True means "must": a relay that does not offer STARTTLS is an error, so a
            # password is never sent in clear by accident. Turned off, we still upgrade
            # opportunistically (None) when the relay offers it.
            start_tls=True if self.starttls else None,
            tls_context=self.tls_context,
            timeout=self.timeout,
        )


class SesBackend:
    """Sends through Amazon SES (`SendEmail`); boto3 is blocking, so calls run in a thread."""

    name = "ses"

    def __init__(
        self,
        *,
        sender: str,
        region: str | None = None,
        configuration_set: str | None = None,
        client: SESClient | None = None,
    ) -> None:
        """Create the SES client (credentials come from the usual AWS chain).

        Args:
            sender: A verified SES identity, used as `Source`.
            region: AWS region; the AWS default chain decides when None.
            configuration_set: SES configuration set for event publishing, if any.
            client: A ready client (tests pass one wrapped by botocore's Stubber).
        """
        self.sender = sender
        self.configuration_set = configuration_set
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "ses",
                region_name=region,
                config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 3}),
            )
        self._client = client

    async def send(self, message: EmailMessage) -> None:
        """Deliver through SES; raises botocore errors on failure."""
        await asyncio.to_thread(self._send_sync, message)

    def _send_sync(self, message: EmailMessage) -> None:
        kwargs: dict[str, Any] = {
            "Source": self.sender,
            "Destination": {"ToAddresses": [message.to]},
            "Message": {
                "Subject": {"Data": message.subject, "Charset": "UTF-8"},
                "Body": {
                    "Text": {"Data": message.text, "Charset": "UTF-8"},
                    "Html": {"Data": message.html, "Charset": "UTF-8"},
                },
            },
        }
        if self.configuration_set:
            kwargs["ConfigurationSetName"] = self.configuration_set
        response = self._client.send_email(**kwargs)
        log_event(logger, "email.ses.accepted", to=message.to, message_id=response["MessageId"])
