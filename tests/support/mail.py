"""Read the `.eml` outbox the `file` email backend writes, and pull tokens out of messages.

Tokens are found in the plain-text part on a line of their own:
`Verification token: <token>` or `Password reset token: <token>`.
"""

from __future__ import annotations

import email.message
import email.policy
import re
from email.parser import BytesParser
from pathlib import Path

#: `kind` → the label that starts the token's line in the text part.
TOKEN_LABELS = {
    "verification": "Verification token",
    "password_reset": "Password reset token",
}


def read_outbox(mail_dir: Path | str) -> list[email.message.EmailMessage]:
    """Every message in the outbox, oldest first (file names sort by sending time)."""
    directory = Path(mail_dir)
    if not directory.is_dir():
        return []
    parser = BytesParser(policy=email.policy.default)
    messages: list[email.message.EmailMessage] = []
    for path in sorted(directory.glob("*.eml")):
        parsed = parser.parsebytes(path.read_bytes())
        assert isinstance(parsed, email.message.EmailMessage)
        messages.append(parsed)
    return messages


def text_body(message: email.message.EmailMessage) -> str:
    """The decoded `text/plain` part, with the wire format's CRLF line ends turned into LF."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "message has no text/plain part"
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def extract_token(message: email.message.EmailMessage, kind: str) -> str:
    """The token of `kind` (`verification` or `password_reset`) from the text part.

    Raises:
        LookupError: The message holds no such token line.
    """
    label = TOKEN_LABELS[kind]
    match = re.search(rf"^{re.escape(label)}: (\S+)$", text_body(message), re.MULTILINE)
    if match is None:
        raise LookupError(f"no '{label}:' line in message {message['Subject']!r}")
    return match.group(1)
