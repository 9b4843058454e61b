"""Errors in the shapes Schwab sends (not Dashtam's problem+json): OAuth, gateway and trader.

Routes raise `SchwabError`; the simulator app renders it byte for byte with its headers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

import httpx


class SchwabError(Exception):
    """An error response: status, JSON body (or raw bytes) and extra headers."""

    def __init__(
        self,
        status: int,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        media_type: str = "application/json",
    ) -> None:
        """Describe the response to send."""
        super().__init__(f"simulated {status}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.media_type = media_type

    def content(self) -> bytes:
        """The body as bytes."""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, separators=(",", ":")).encode()


class SimulatedConnectionDrop(httpx.RemoteProtocolError):
    """Raised instead of dropping the socket when the simulator runs in-process.

    Over a real socket the simulator aborts the TCP connection. Under httpx's `ASGITransport`
    there is no socket, so this exception surfaces in the calling client instead; it is an
    `httpx.TransportError`, exactly what a client sees when a server hangs up on it.
    """


def oauth_error(status: int, error: str, description: str | None = None) -> SchwabError:
    """`{"error": ..., "error_description": ...}` from the token endpoint."""
    body: dict[str, str] = {"error": error}
    if description is not None:
        body["error_description"] = description
    return SchwabError(status, body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def refresh_rejected(digest: str) -> SchwabError:
    """The 400 Schwab sends for an expired, superseded or unknown refresh token.

    Its `error_description` carries a second JSON document as a string, as observed.
    """
    inner = json.dumps(
        {
            "error_description": (
                f"Exception while authenticating refresh token [tokenDigest={digest}, "
                f"Exception=Failed refresh token authentication [tokenDigest={digest}]]"
            ),
            "error": "refresh_token_authentication_error",
        },
        separators=(",", ":"),
    )
    return oauth_error(400, "unsupported_token_type", f'400 Bad Request: "{inner}"')


def gateway_error(
    status: int, title: str, detail: str, headers: Mapping[str, str] | None = None
) -> SchwabError:
    """The API gateway's `{"errors": [{id, status, title, detail}]}` body."""
    body = {
        "errors": [{"id": str(uuid.uuid4()), "status": status, "title": title, "detail": detail}]
    }
    return SchwabError(status, body, headers=headers)


def unauthorized() -> SchwabError:
    """401 for a missing, unknown, expired or revoked bearer token."""
    return gateway_error(401, "Unauthorized", "Client not authorized")


def trader_error(status: int, message: str) -> SchwabError:
    """The Trader API's `ServiceError`: `{"message": ..., "errors": [...]}`."""
    return SchwabError(status, {"message": message, "errors": [message]})
