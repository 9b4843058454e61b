"""Render an email template into (subject, text, html) with Jinja2.

Each template is three files under `templates/`: `<name>.subject.txt`, `<name>.txt` and
`<name>.html`. Only the HTML is autoescaped; the text part is plain text and never parsed as
markup. Person-supplied values (the name) are squeezed onto one short line first, so nobody can
write extra lines into an email — such as a fake `Verification token:` line.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

#: The templates `render_email` knows; anything else is a programming error.
TEMPLATES = frozenset(
    {
        "verification",
        "password_reset",
        "registration_attempt",
        "password_changed",
        # The sync scheduler's connection notices (services/sync/notices.py).
        "reauth_soon",
        "reauth_required",
    }
)
_MAX_NAME_LENGTH = 100
_WHITESPACE = re.compile(r"\s+")


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("dashtam.services.email", "templates"),
        # Autoescape by file extension: on for .html, off for the .txt parts and the subject.
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def clean_display_text(value: object, *, max_length: int = _MAX_NAME_LENGTH) -> str:
    """One line of printable text: control characters dropped, whitespace collapsed, trimmed."""
    text = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
        for ch in str(value)
        if unicodedata.category(ch) not in ("Cf", "Cs", "Co")
    )
    text = _WHITESPACE.sub(" ", text).strip()
    return text[:max_length].rstrip()


def render_email(template: str, **context: object) -> tuple[str, str, str]:
    """Render one of `TEMPLATES`.

    Args:
        template: The template name, e.g. `verification`.
        **context: Template values: `name`, `token`, `link_base_url`, `app_name`, and optionally
            `expires_in` (e.g. "24 hours"). `app_name` defaults to "Dashtam".

    Returns:
        `(subject, text, html)`.

    Raises:
        KeyError: Unknown template.
        jinja2.UndefinedError: A value the template needs was not given.
    """
    if template not in TEMPLATES:
        raise KeyError(f"unknown email template {template!r}")
    values: dict[str, object] = {"app_name": "Dashtam", **context}
    if values.get("name") is not None:
        values["name"] = clean_display_text(values["name"])
    if isinstance(values.get("link_base_url"), str):
        values["link_base_url"] = str(values["link_base_url"]).rstrip("/")
    env = _environment()
    subject = env.get_template(f"{template}.subject.txt").render(values)
    text = env.get_template(f"{template}.txt").render(values)
    html = env.get_template(f"{template}.html").render(values)
    return clean_display_text(subject, max_length=200), text, html
