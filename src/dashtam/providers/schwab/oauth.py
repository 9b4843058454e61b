"""Schwab's OAuth 2.0 authorization-code flow: the authorize URL, token bodies, token replies.

Facts from the reference (`schwab-trader-api.md` §1): the authorize endpoint takes
`client_id`, `redirect_uri`, `response_type=code` and an echoed `state`; the token endpoint
wants HTTP Basic client authentication and a form body; the code arrives with its trailing
`@` percent-encoded (`%40`) and must be decoded before the exchange; the `redirect_uri` must
match the registered one byte for byte at both steps. Schwab documents no PKCE support, so
the provider does not advertise it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlencode

import httpx

from dashtam.providers.base import TokenSet
from dashtam.providers.schwab.parsing import MalformedPayload, decode_json


def authorize_url(auth_base_url: str, *, client_id: str, redirect_uri: str, state: str) -> str:
    """The URL the account holder's browser opens to log in and pick accounts.

    Args:
        auth_base_url: `https://api.schwabapi.com/v1/oauth` (or the simulator's).
        client_id: The App Key.
        redirect_uri: The registered callback, exactly as registered.
        state: Our opaque, single-use state (echoed back on the callback).

    Returns:
        The full authorize URL. `scope` is omitted: real clients do not send it.
    """
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": state,
        }
    )
    return f"{auth_base_url.rstrip('/')}/authorize?{query}"


def token_url(auth_base_url: str) -> str:
    """The token endpoint under the OAuth base URL."""
    return f"{auth_base_url.rstrip('/')}/token"


def normalise_code(code: str) -> str:
    """Undo the percent-encoding of a code copied from the callback URL (`...%40` -> `...@`).

    Decoding an already-decoded Schwab code is a no-op: the code alphabet (base64url, `.`
    and `@`) contains no `%`.
    """
    return unquote(code.strip())


def exchange_body(code: str, redirect_uri: str) -> dict[str, str]:
    """Form body for the authorization-code grant."""
    return {
        "grant_type": "authorization_code",
        "code": normalise_code(code),
        "redirect_uri": redirect_uri,
    }


def refresh_body(refresh_token: str) -> dict[str, str]:
    """Form body for the refresh-token grant."""
    return {"grant_type": "refresh_token", "refresh_token": refresh_token}


def client_auth(app_key: str, app_secret: str) -> httpx.BasicAuth:
    """HTTP Basic client authentication: `base64(app_key:app_secret)`."""
    return httpx.BasicAuth(app_key, app_secret)


def _optional_str(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedPayload(f"token field {name} is not a string")
    return value


def parse_token_response(response: httpx.Response, *, issued_at: datetime) -> TokenSet:
    """Turn a 2xx token-endpoint reply into a `TokenSet`.

    Args:
        response: The successful reply.
        issued_at: When the request was sent: expiry counts from then, so clock drift during
            the call makes us refresh slightly early, never late.

    Returns:
        The tokens; `refresh_token` is None when the reply omits it.

    Raises:
        MalformedPayload: Not JSON, or no usable access token / lifetime.
    """
    body = decode_json(response)
    if not isinstance(body, dict):
        raise MalformedPayload("token reply is not a JSON object")
    access_token = _optional_str(body, "access_token")
    if access_token is None:
        raise MalformedPayload("token reply has no access_token")
    expires_raw = body.get("expires_in")
    expires_in: int | None
    if expires_raw is None:
        expires_in = None
    else:
        try:
            expires_in = int(expires_raw)
        except (TypeError, ValueError) as exc:
            raise MalformedPayload("expires_in is not a number") from exc
        if expires_in <= 0:
            raise MalformedPayload("expires_in is not positive")
    return TokenSet(
        access_token=access_token,
        refresh_token=_optional_str(body, "refresh_token"),
        token_type=_optional_str(body, "token_type") or "Bearer",
        expires_in=expires_in,
        scope=_optional_str(body, "scope"),
        id_token=_optional_str(body, "id_token"),
        issued_at=issued_at,
    )
