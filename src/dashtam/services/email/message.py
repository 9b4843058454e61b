"""The email a service wants sent, and its RFC 5322 rendering."""

from __future__ import annotations

import email.message
import email.policy
import email.utils
from dataclasses import dataclass, field


@dataclass(frozen=True)
class EmailMessage:
    """One outgoing email. The bodies carry single-use tokens, so `repr` leaves them out."""

    to: str
    subject: str
    text: str = field(repr=False)
    html: str = field(repr=False)

    def __post_init__(self) -> None:
        # A CR or LF in a header value would let a caller inject headers (Bcc: …).
        for name in ("to", "subject"):
            value = getattr(self, name)
            if "\r" in value or "\n" in value:
                raise ValueError(f"email {name} must be a single line")
        if "@" not in self.to:
            raise ValueError("email recipient must be an address")

    def to_mime(self, sender: str) -> email.message.EmailMessage:
        """Render as a `multipart/alternative` message (text first, HTML preferred).

        Args:
            sender: The `From` header, e.g. `Dashtam <no-reply@example.com>`.
        """
        mime = email.message.EmailMessage(policy=email.policy.SMTP)
        mime["From"] = sender
        mime["To"] = self.to
        mime["Subject"] = self.subject
        mime["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or "localhost"
        mime["Message-ID"] = email.utils.make_msgid(domain=domain)
        mime.set_content(self.text)
        mime.add_alternative(self.html, subtype="html")
        return mime
