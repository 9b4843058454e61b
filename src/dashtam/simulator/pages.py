"""HTML of the simulated Schwab login: the sign-in form and the error page.

Every value that came from a request is escaped before it is echoed, including hidden fields.
"""

from __future__ import annotations

from html import escape

#: No scripts, no framing, no external resources.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"

_STYLE = """
body { font-family: system-ui, sans-serif; background: #f4f6f8; margin: 0; }
main { max-width: 26rem; margin: 4rem auto; background: #fff; padding: 2rem;
       border-radius: 8px; box-shadow: 0 1px 4px rgba(0,0,0,.15); }
h1 { font-size: 1.3rem; margin-top: 0; }
label { display: block; margin: .8rem 0 .2rem; }
input[type=text], input[type=password] { width: 100%; padding: .5rem; box-sizing: border-box; }
.actions { margin-top: 1.2rem; display: flex; gap: .6rem; }
.error { color: #a40000; background: #fdecec; padding: .6rem; border-radius: 4px; }
.hint { color: #555; font-size: .85rem; margin-top: 1.5rem; }
"""


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def _hidden(name: str, value: str | None) -> str:
    if value is None:
        return ""
    return f'<input type="hidden" name="{escape(name)}" value="{escape(value, quote=True)}">'


def login_page(
    *,
    client_id: str,
    redirect_uri: str,
    state: str | None,
    username: str = "",
    error: str | None = None,
    test_users: tuple[str, ...] = (),
) -> str:
    """The sign-in form that posts back to `/v1/oauth/authorize`.

    Args:
        client_id: The app key, carried in a hidden field.
        redirect_uri: The registered callback, carried in a hidden field.
        state: The client's state, carried back unchanged (omitted when absent).
        username: Pre-filled user name after a failed attempt.
        error: A message to show above the form.
        test_users: User names to list as a hint (their passwords are `<name>-password`).

    Returns:
        A complete HTML document.
    """
    error_html = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    hint = ""
    if test_users:
        names = ", ".join(f"<code>{escape(u)}</code>" for u in test_users)
        hint = (
            f'<p class="hint">Simulator test users: {names}. '
            "Each password is the user name followed by <code>-password</code>.</p>"
        )
    body = f"""
<h1>Charles Schwab (simulator) &mdash; Log in</h1>
<p>An application is asking to read your accounts.</p>
{error_html}
<form method="post" action="/v1/oauth/authorize">
{_hidden("client_id", client_id)}
{_hidden("redirect_uri", redirect_uri)}
{_hidden("state", state)}
<label for="username">Login ID</label>
<input type="text" id="username" name="username" autocomplete="username"
 value="{escape(username, quote=True)}" required>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<div class="actions">
<button type="submit" name="action" value="login">Log in and allow</button>
<button type="submit" name="action" value="cancel" formnovalidate>Cancel</button>
</div>
</form>
{hint}
"""
    return _page("Log in - Charles Schwab (simulator)", body)


def error_page(message: str) -> str:
    """The page shown instead of redirecting when the client or redirect URI is wrong."""
    body = (
        "<h1>Access Denied</h1>"
        f'<p class="error" role="alert">{escape(message)}</p>'
        "<p>The application's authorization request is not valid. Nothing was sent to it.</p>"
    )
    return _page("Access Denied - Charles Schwab (simulator)", body)
