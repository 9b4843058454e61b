"""The small result page a person sees after the institution sends their browser back.

Every dynamic value is HTML-escaped; the page loads nothing external and runs no script.
"""

from __future__ import annotations

from html import escape

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} · Dashtam</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 36rem; margin: 4rem auto; padding: 0 1rem;
       color: #1f2933; }}
h1 {{ font-size: 1.5rem; color: {colour}; }}
p {{ line-height: 1.5; }}
code {{ background: #f0f4f8; padding: 0 .25rem; }}
</style>
</head>
<body>
<main>
<h1 id="result" data-outcome="{outcome}">{title}</h1>
<p id="message">{message}</p>
{extra}<p>You can close this window.</p>
</main>
</body>
</html>
"""


def render_result_page(*, ok: bool, title: str, message: str, reference: str | None = None) -> str:
    """An HTML page saying whether the connection worked, and why not.

    Args:
        ok: Connected (green) or not (red).
        title: The headline.
        message: One or two sentences for the person.
        reference: A request id to quote when asking for help.

    Returns:
        The page, with every value escaped.
    """
    extra = (
        f'<p>Reference: <code id="reference">{escape(reference)}</code></p>\n' if reference else ""
    )
    return _PAGE.format(
        title=escape(title),
        message=escape(message),
        colour="#1b7f3b" if ok else "#b42318",
        outcome="connected" if ok else "failed",
        extra=extra,
    )
