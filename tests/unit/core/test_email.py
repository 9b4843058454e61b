"""Email rendering, the message type, the file and console backends and the service."""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError

from dashtam.core.config import ConfigurationError
from dashtam.services.email import EmailMessage, EmailService, build_email_service
from dashtam.services.email.backends import ConsoleBackend, FileBackend
from dashtam.services.email.render import render_email
from tests.conftest import make_settings
from tests.support.mail import extract_token, read_outbox, text_body

TOKEN = "tok_AbC-123_xyz"
BASE = "https://app.example.test"


def render(template: str, **context: Any) -> tuple[str, str, str]:
    values: dict[str, Any] = {"name": "Ada", "token": TOKEN, "link_base_url": BASE}
    values.update(context)
    return render_email(template, **values)


def message(**overrides: str) -> EmailMessage:
    values = {"to": "ada@example.com", "subject": "Hi", "text": f"T {TOKEN}", "html": "<p>H</p>"}
    values.update(overrides)
    return EmailMessage(**values)


class BrokenBackend:
    name = "broken"

    async def send(self, message: EmailMessage) -> None:
        raise ConnectionError("relay unreachable")


class TestRenderEmail:
    @pytest.mark.parametrize(
        ("template", "path"),
        [("verification", "verify-email"), ("password_reset", "reset-password")],
    )
    def test_token_templates_carry_the_token_and_a_link(self, template: str, path: str) -> None:
        subject, text, html = render(template)
        link = f"{BASE}/{path}?token={TOKEN}"
        assert subject and "\n" not in subject
        assert link in text and link in html
        assert TOKEN in html

    @pytest.mark.parametrize("template", ["registration_attempt", "password_changed"])
    def test_notice_templates_greet_by_name(self, template: str) -> None:
        subject, text, html = render_email(template, name="Ada", link_base_url=BASE)
        assert "Hello Ada," in text and "Hello Ada," in html
        assert TOKEN not in text

    def test_registration_attempt_says_what_happened(self) -> None:
        subject, text, _ = render_email("registration_attempt", name="Ada", link_base_url=BASE)
        assert "tried to register" in subject.lower()
        assert "tried to register" in text

    def test_html_escapes_a_malicious_name(self) -> None:
        _, _, html = render("verification", name='<script>alert("x")</script><a href="evil">')
        assert "<script>" not in html and '<a href="evil">' not in html
        assert "&lt;script&gt;" in html

    def test_a_name_cannot_add_lines_such_as_a_fake_token(self) -> None:
        _, text, _ = render("verification", name="Eve\nVerification token: FAKE\r\n")
        token_lines = [line for line in text.splitlines() if line.startswith("Verification")]
        assert token_lines == [f"Verification token: {TOKEN}"]

    def test_missing_token_is_an_error_not_an_empty_link(self) -> None:
        with pytest.raises(UndefinedError):
            render_email("verification", name="Ada", link_base_url=BASE)

    def test_unknown_template_is_refused(self) -> None:
        with pytest.raises(KeyError):
            render("../../etc/passwd")

    def test_missing_name_gets_a_neutral_greeting(self) -> None:
        _, text, _ = render("password_changed", name=None)
        assert text.startswith("Hello there,")


class TestEmailMessage:
    def test_repr_leaves_out_the_bodies(self) -> None:
        text = repr(message())
        assert TOKEN not in text and "ada@example.com" in text

    @pytest.mark.parametrize("field", ["to", "subject"])
    def test_header_injection_is_refused(self, field: str) -> None:
        with pytest.raises(ValueError, match="single line"):
            message(**{field: "ada@example.com\r\nBcc: eve@example.com"})

    def test_mime_has_text_and_html_alternatives(self) -> None:
        mime = message().to_mime("Dashtam <no-reply@dashtam.test>")
        assert mime.get_content_type() == "multipart/alternative"
        assert mime["Message-ID"].endswith("@dashtam.test>")


class TestFileBackend:
    async def test_writes_one_parseable_eml_per_message(self, tmp_path: Path) -> None:
        backend = FileBackend(tmp_path / "mail", "Dashtam <no-reply@localhost>")
        subject, text, html = render("verification")
        await backend.send(
            EmailMessage(to="ada@example.com", subject=subject, text=text, html=html)
        )
        [mail] = read_outbox(tmp_path / "mail")
        assert mail["To"] == "ada@example.com"
        assert mail["From"] == "Dashtam <no-reply@localhost>"
        assert mail["Subject"] == subject
        assert extract_token(mail, "verification") == TOKEN
        assert mail.get_body(preferencelist=("html",)) is not None

    async def test_outbox_is_in_sending_order_with_unique_names(self, tmp_path: Path) -> None:
        backend = FileBackend(tmp_path, "x@localhost")
        for number in range(25):
            await backend.send(message(subject=f"message {number}"))
        names = [p.name for p in tmp_path.iterdir()]
        assert len(set(names)) == 25 and all(name.endswith(".eml") for name in names)
        assert [m["Subject"] for m in read_outbox(tmp_path)] == [f"message {n}" for n in range(25)]

    async def test_files_are_private_and_no_temp_file_is_left(self, tmp_path: Path) -> None:
        await FileBackend(tmp_path, "x@localhost").send(message())
        [path] = list(tmp_path.iterdir())
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    async def test_unicode_content_survives(self, tmp_path: Path) -> None:
        await FileBackend(tmp_path, "x@localhost").send(
            message(subject="Grüße 🦊", text="Ünïcödé body\n")
        )
        [mail] = read_outbox(tmp_path)
        assert mail["Subject"] == "Grüße 🦊"
        assert text_body(mail) == "Ünïcödé body\n"


class TestConsoleBackend:
    async def test_logs_a_summary_but_never_the_body(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO, logger="dashtam.email"):
            await ConsoleBackend("x@localhost").send(message())
        [record] = caplog.records
        assert record.getMessage() == "email.console"
        fields = record.__dict__["fields"]
        assert fields["to"] == "ada@example.com" and fields["subject"] == "Hi"
        assert TOKEN not in str(record.__dict__)


class TestEmailService:
    async def test_sends_a_rendered_template(self, tmp_path: Path) -> None:
        service = EmailService(
            FileBackend(tmp_path, "x@localhost"), link_base_url=BASE, app_name="Dashtam"
        )
        await service.send_template("ada@example.com", "password_reset", name="Ada", token=TOKEN)
        [mail] = read_outbox(tmp_path)
        assert extract_token(mail, "password_reset") == TOKEN
        assert f"{BASE}/reset-password?token={TOKEN}" in text_body(mail)

    async def test_backend_failure_is_logged_and_swallowed(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        service = EmailService(BrokenBackend(), link_base_url=BASE, app_name="Dashtam")
        with caplog.at_level(logging.INFO, logger="dashtam.email"):
            await service.send_template("ada@example.com", "verification", name="A", token=TOKEN)
        [record] = caplog.records
        assert record.getMessage() == "email.send.failed"
        assert record.__dict__["fields"]["error_type"] == "ConnectionError"
        assert TOKEN not in str(record.__dict__)

    async def test_render_failure_is_swallowed_too(self, caplog: pytest.LogCaptureFixture) -> None:
        service = EmailService(BrokenBackend(), link_base_url=BASE, app_name="Dashtam")
        with caplog.at_level(logging.ERROR, logger="dashtam.email"):
            await service.send_template("ada@example.com", "no_such_template")
        assert [r.getMessage() for r in caplog.records] == ["email.send.failed"]


class TestBuildEmailService:
    def test_development_and_test_default_to_the_file_outbox(self, tmp_path: Path) -> None:
        settings = make_settings(tmp_path)
        service = build_email_service(settings)
        assert isinstance(service.backend, FileBackend)
        assert service.backend.directory == tmp_path / "var" / "mail"

    def test_production_defaults_to_console(self, tmp_path: Path) -> None:
        settings = make_settings(tmp_path, environment="production")
        assert build_email_service(settings).backend.name == "console"

    def test_smtp_without_a_host_is_a_configuration_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="SMTP_HOST"):
            build_email_service(make_settings(tmp_path, email_backend="smtp"))
