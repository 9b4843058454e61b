"""SMTP (against a tiny STARTTLS server run inside the test) and SES (botocore Stubber)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.policy
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from pathlib import Path

import aiosmtplib
import boto3
import pytest
from botocore.stub import ANY, Stubber
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dashtam.services.email import EmailMessage, EmailService
from dashtam.services.email.backends import SesBackend, SmtpBackend
from dashtam.services.email.render import render_email
from tests.support.mail import extract_token

TOKEN = "tok_smtp-123"


@dataclass
class TlsFiles:
    server: ssl.SSLContext
    client: ssl.SSLContext


def self_signed(tmp_path: Path) -> TlsFiles:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "smtp.pem", tmp_path / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return TlsFiles(server=server, client=client)


@dataclass
class TinySmtpServer:
    """Just enough ESMTP (EHLO, STARTTLS, AUTH PLAIN, MAIL, RCPT, DATA, QUIT) to test against."""

    tls: ssl.SSLContext | None
    port: int = 0
    messages: list[bytes] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    auth_over_tls: list[bool] = field(default_factory=list)
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        secure = False

        async def reply(*lines: str) -> None:
            for index, line in enumerate(lines):
                sep = " " if index == len(lines) - 1 else "-"
                writer.write(f"{line[:3]}{sep}{line[4:]}\r\n".encode())
            await writer.drain()

        await reply("220 tiny ESMTP")
        try:
            while line := await reader.readline():
                command = line.decode().rstrip("\r\n")
                verb = command.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    caps = ["250 tiny"]
                    if self.tls is not None and not secure:
                        caps.append("250 STARTTLS")
                    caps += ["250 AUTH PLAIN", "250 8BITMIME"]
                    await reply(*caps)
                elif verb == "STARTTLS" and self.tls is not None:
                    await reply("220 go ahead")
                    await writer.start_tls(self.tls)
                    secure = True
                elif verb == "AUTH":
                    encoded = command.split(" ", 2)[2]
                    _, user, password = base64.b64decode(encoded).decode().split("\0")
                    self.logins.append((user, password))
                    self.auth_over_tls.append(secure)
                    await reply("235 ok")
                elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                    await reply("250 ok")
                elif verb == "DATA":
                    await reply("354 send it")
                    body = bytearray()
                    while (chunk := await reader.readline()) != b".\r\n":
                        body += chunk[1:] if chunk.startswith(b"..") else chunk
                    self.messages.append(bytes(body))
                    await reply("250 queued")
                elif verb == "QUIT":
                    await reply("221 bye")
                    break
                else:
                    await reply("502 not implemented")
        finally:
            writer.close()


@pytest.fixture
async def tls(tmp_path: Path) -> TlsFiles:
    return self_signed(tmp_path)


@pytest.fixture
async def smtp_server(tls: TlsFiles) -> AsyncIterator[TinySmtpServer]:
    server = TinySmtpServer(tls=tls.server)
    await server.start()
    yield server
    await server.stop()


def verification_message() -> EmailMessage:
    subject, text, html = render_email(
        "verification", name="Ada", token=TOKEN, link_base_url="https://x"
    )
    return EmailMessage(to="ada@example.com", subject=subject, text=text, html=html)


def smtp_backend(port: int, tls: TlsFiles, **overrides: object) -> SmtpBackend:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "sender": "Dashtam <no-reply@dashtam.test>",
        "username": "mailer",
        "password": "relay-password",
        "tls_context": tls.client,
        "timeout": 5.0,
    }
    values.update(overrides)
    return SmtpBackend(**values)  # type: ignore[arg-type]


class TestSmtpBackend:
    async def test_delivers_over_starttls_with_login(
        self, smtp_server: TinySmtpServer, tls: TlsFiles
    ) -> None:
        await smtp_backend(smtp_server.port, tls).send(verification_message())
        assert smtp_server.logins == [("mailer", "relay-password")]
        assert smtp_server.auth_over_tls == [True]
        [raw] = smtp_server.messages
        parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
        assert parsed["To"] == "ada@example.com"
        assert extract_token(parsed, "verification") == TOKEN  # type: ignore[arg-type]

    async def test_refuses_a_relay_without_starttls(self, tls: TlsFiles) -> None:
        plain = TinySmtpServer(tls=None)
        await plain.start()
        try:
            with pytest.raises(aiosmtplib.SMTPException):
                await smtp_backend(plain.port, tls).send(verification_message())
            assert plain.logins == []  # the password never went out in clear
        finally:
            await plain.stop()

    async def test_refuses_an_untrusted_certificate(self, smtp_server: TinySmtpServer) -> None:
        backend = smtp_backend(
            smtp_server.port, TlsFiles(ssl.create_default_context(), ssl.create_default_context())
        )
        with pytest.raises((aiosmtplib.SMTPException, ssl.SSLError)):
            await backend.send(verification_message())
        assert smtp_server.logins == []

    async def test_service_swallows_an_unreachable_relay(self, tls: TlsFiles) -> None:
        service = EmailService(
            smtp_backend(1, tls, timeout=1.0), link_base_url="https://x", app_name="Dashtam"
        )
        await service.send_template("ada@example.com", "password_changed", name="Ada")

    def test_repr_hides_the_password(self, tls: TlsFiles) -> None:
        assert "relay-password" not in repr(smtp_backend(25, tls))


def ses_client() -> object:
    return boto3.client(
        "ses",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - fake credentials for the stub
    )


class TestSesBackend:
    async def test_sends_text_and_html_with_the_configuration_set(self) -> None:
        client = ses_client()
        message = verification_message()
        with Stubber(client) as stubber:  # type: ignore[arg-type]
            stubber.add_response(
                "send_email",
                {"MessageId": "0100-abc"},
                {
                    "Source": "Dashtam <no-reply@dashtam.test>",
                    "Destination": {"ToAddresses": ["ada@example.com"]},
                    "Message": {
                        "Subject": {"Data": message.subject, "Charset": "UTF-8"},
                        "Body": {
                            "Text": {"Data": message.text, "Charset": "UTF-8"},
                            "Html": {"Data": ANY, "Charset": "UTF-8"},
                        },
                    },
                    "ConfigurationSetName": "dashtam-events",
                },
            )
            backend = SesBackend(
                sender="Dashtam <no-reply@dashtam.test>",
                configuration_set="dashtam-events",
                client=client,  # type: ignore[arg-type]
            )
            await backend.send(message)
            stubber.assert_no_pending_responses()

    async def test_service_swallows_an_ses_rejection(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        client = ses_client()
        with Stubber(client) as stubber:  # type: ignore[arg-type]
            stubber.add_client_error("send_email", service_error_code="MessageRejected")
            backend = SesBackend(sender="no-reply@dashtam.test", client=client)  # type: ignore[arg-type]
            service = EmailService(backend, link_base_url="https://x", app_name="Dashtam")
            await service.send_template("ada@example.com", "verification", name="A", token=TOKEN)
            stubber.assert_no_pending_responses()
        assert [r.getMessage() for r in caplog.records] == ["email.send.failed"]
