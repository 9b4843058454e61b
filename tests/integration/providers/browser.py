"""A minimal "browser" for the simulator's login page: read the form, fill it, submit it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx


@dataclass
class Form:
    """The first form of a page: where it posts and its pre-filled fields."""

    action: str = ""
    method: str = "get"
    fields: dict[str, str] = field(default_factory=dict)
    buttons: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.form: Form | None = None
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.form is None:
            self.form = Form(values.get("action", ""), values.get("method", "get").lower())
            self._inside = True
        elif self._inside and self.form is not None and "name" in values:
            if tag == "input":
                self.form.fields[values["name"]] = values.get("value", "")
            elif tag == "button":
                self.form.buttons[values["name"] + "=" + values.get("value", "")] = values["name"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False


def read_form(html: str) -> Form:
    """The first form on the page (fails the test when there is none)."""
    parser = _FormParser()
    parser.feed(html)
    assert parser.form is not None, "no form on the page"
    return parser.form


@dataclass(frozen=True)
class Callback:
    """Where the institution sent the browser back to, with the raw (still encoded) query."""

    url: str
    raw_code: str | None
    state: str | None
    error: str | None


def _raw_param(query: str, name: str) -> str | None:
    match = re.search(rf"(?:^|&){name}=([^&]*)", query)
    return match.group(1) if match else None


async def log_in(
    browser: httpx.AsyncClient,
    authorize_url: str,
    *,
    username: str = "demo",
    password: str = "demo-password",
    action: str = "login",
) -> Callback:
    """Open the authorize URL, submit the login form like a person would, follow to the callback.

    Returns:
        The callback the browser was redirected to (not followed: that is our server's job).
    """
    page = await browser.get(authorize_url)
    assert page.status_code == 200, page.text
    form = read_form(page.text)
    assert form.method == "post"
    data = dict(form.fields)
    data.update({"username": username, "password": password, "action": action})
    reply = await browser.post(urljoin(authorize_url, form.action), data=data)
    assert reply.status_code == 302, reply.text
    location = reply.headers["location"]
    query = urlsplit(location).query
    state = _raw_param(query, "state")
    return Callback(
        url=location,
        raw_code=_raw_param(query, "code"),
        state=httpx.QueryParams(query).get("state") if state is not None else None,
        error=_raw_param(query, "error"),
    )
