"""The provider protocol every institution client implements, and the values it trades in.

A provider is a stateless client for one institution: it builds authorization URLs, exchanges
and refreshes tokens, and fetches raw account data. It never touches the database, and the
plain account number never leaves it (payloads carry the last four digits and the opaque
account hash instead). Normalising payloads into our model is the mapping layer's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from dashtam.core.types import utcnow

#: A raw institution payload, numbers parsed as `Decimal`, plain account numbers removed.
Payload = dict[str, Any]


class RawPayload(dict[str, Any]):
    """A payload that also carries the (scrubbed) JSON text it was decoded from.

    Bulk replies are decoded element by element and each element keeps its own slice of the
    text, so storing the raw payload costs no second encoding. The text and the mapping hold
    the same data; only member order and number spelling (the institution's own) may differ
    from what encoding the mapping would give.
    """

    __slots__ = ("source",)
    source: str


class AuthType(StrEnum):
    """How an account holder grants access."""

    OAUTH2 = "oauth2"


class Capability(StrEnum):
    """What a provider can do; services check these instead of the provider's key."""

    #: Accepts an RFC 7636 `code_challenge` on the authorize URL.
    PKCE = "pkce"
    #: Issues refresh tokens (access can be renewed without the account holder).
    REFRESH_TOKEN = "refresh_token"  # noqa: S105 - a capability name, not a secret
    ACCOUNTS = "accounts"
    BALANCES = "balances"
    POSITIONS = "positions"
    TRANSACTIONS = "transactions"
    USER_PREFERENCE = "user_preference"


@dataclass(frozen=True, repr=False)
class TokenSet:
    """Tokens returned by an institution's token endpoint.

    `repr`/`str` never show token values, so a TokenSet can appear in logs and tracebacks.

    Attributes:
        access_token: The bearer token for data calls.
        refresh_token: The refresh token, or None when the reply omitted it (keep the old one).
        token_type: Usually `Bearer`.
        expires_in: Access-token lifetime in seconds as the institution reported it.
        scope: Granted scope, if reported.
        id_token: An OpenID id token, if issued.
        issued_at: When we received the reply (UTC).
    """

    access_token: str
    refresh_token: str | None = None
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int | None = None
    scope: str | None = None
    id_token: str | None = None
    issued_at: datetime = field(default_factory=utcnow)

    @property
    def access_expires_at(self) -> datetime | None:
        """When the access token stops working (UTC), if the lifetime is known."""
        if self.expires_in is None:
            return None
        return self.issued_at + timedelta(seconds=self.expires_in)

    def __repr__(self) -> str:
        return (
            f"TokenSet(token_type={self.token_type!r}, expires_in={self.expires_in!r}, "
            f"scope={self.scope!r}, access_token='[REDACTED]', "
            f"refresh_token={'[REDACTED]' if self.refresh_token else None!r}, "
            f"id_token={'[REDACTED]' if self.id_token else None!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class AccountRef:
    """How a provider identifies one account without exposing its number.

    Attributes:
        hash: The institution's opaque account id (Schwab: the encrypted hash used in URLs).
        number_last4: The last four characters of the account number, for display.
    """

    hash: str
    number_last4: str


@runtime_checkable
class Provider(Protocol):
    """One institution's client. Implementations are safe to share across requests."""

    key: str
    display_name: str
    auth_type: AuthType
    capabilities: frozenset[Capability]
    #: Longest date window one `transactions` call accepts.
    max_window: timedelta
    #: Most rows one `transactions` call returns; a full page means "split the window".
    max_rows_per_call: int
    #: Absolute refresh-token lifetime from the interactive login (None: unknown/unlimited).
    refresh_token_max_age: timedelta | None

    @property
    def is_configured(self) -> bool:
        """Whether the server has the credentials to use this provider."""

    def authorization_url(self, *, state: str, code_challenge: str | None = None) -> str:
        """The institution's authorize URL for the account holder's browser."""

    async def exchange_code(self, code: str, code_verifier: str | None = None) -> TokenSet:
        """Trade an authorization code for tokens (never retried once sent)."""

    async def refresh(self, refresh_token: str) -> TokenSet:
        """Get a new access token; `ReauthRequired` when the refresh token is dead."""

    async def account_numbers(self, access_token: str) -> list[AccountRef]:
        """The accounts the holder exposed, as opaque hashes plus last four digits."""

    async def accounts(self, access_token: str, *, with_positions: bool = True) -> list[Payload]:
        """Every exposed account with balances (and positions)."""

    async def account(
        self, access_token: str, account_hash: str, *, with_positions: bool = True
    ) -> Payload:
        """One account by hash."""

    async def transactions(
        self,
        access_token: str,
        account_hash: str,
        start: datetime,
        end: datetime,
        types: Sequence[str] | None = None,
    ) -> list[Payload]:
        """Transactions in one window of at most `max_window`."""

    async def transaction(
        self, access_token: str, account_hash: str, transaction_id: str | int
    ) -> Payload:
        """One transaction by id."""

    async def user_preference(self, access_token: str) -> Payload:
        """The holder's preferences (account nicknames, …)."""

    async def aclose(self) -> None:
        """Release the HTTP client."""
