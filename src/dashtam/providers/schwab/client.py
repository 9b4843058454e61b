"""The Charles Schwab provider: OAuth and the Trader API (accounts, transactions, preferences).

Behaviour follows `schwab-trader-api.md`: account hashes (never plain numbers) in URLs,
transaction windows of at most one year with `yyyy-MM-dd'T'HH:mm:ss.SSSZ` dates and an
explicit `types` list, responses that may be an object or a one-element array, and a
`Schwab-Client-CorrelId` header on every reply (logged by the HTTP layer). Plain account
numbers are removed from every payload before it leaves this module.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from dashtam.core.config import Settings
from dashtam.core.http_client import (
    ProviderHttpClient,
    Rand,
    RequestBudgetExhausted,
    RetryMode,
    Sleep,
    create_provider_http,
    is_certificate_error,
)
from dashtam.core.kv import KeyValueStore
from dashtam.core.logging import log_event
from dashtam.core.types import utcnow
from dashtam.providers.base import AccountRef, AuthType, Capability, Payload, TokenSet
from dashtam.providers.errors import (
    ProviderBadResponse,
    ProviderError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderUnavailable,
)
from dashtam.providers.schwab import errors as schwab_errors
from dashtam.providers.schwab import oauth
from dashtam.providers.schwab.bulk_text import read_transactions
from dashtam.providers.schwab.parsing import (
    MalformedPayload,
    decode_json,
    last4,
    scrub_account_numbers,
)

logger = logging.getLogger("dashtam.providers.schwab")

KEY = "schwab"
CORRELATION_HEADER = "Schwab-Client-CorrelId"

#: Every `TransactionType` in Schwab's spec; the endpoint requires `types`, and a
#: comma-separated list of all of them is what established clients send.
TRANSACTION_TYPES: tuple[str, ...] = (
    "TRADE",
    "RECEIVE_AND_DELIVER",
    "DIVIDEND_OR_INTEREST",
    "ACH_RECEIPT",
    "ACH_DISBURSEMENT",
    "CASH_RECEIPT",
    "CASH_DISBURSEMENT",
    "ELECTRONIC_FUND",
    "WIRE_OUT",
    "WIRE_IN",
    "JOURNAL",
    "MEMORANDUM",
    "MARGIN_CALL",
    "MONEY_MARKET",
    "SMA_ADJUSTMENT",
)


def format_schwab_time(value: datetime) -> str:
    """`2024-03-28T21:10:42.000Z`: UTC with milliseconds, the format the spec names.

    Raises:
        ValueError: For a naive datetime (its zone is unknowable).
    """
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError("naive datetime: transaction windows must be timezone-aware")
    utc = value.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


class SchwabProvider:
    """Client for one Schwab app (App Key / Secret); shared by every connection using it."""

    key = KEY
    display_name = "Charles Schwab"
    auth_type = AuthType.OAUTH2
    capabilities = frozenset(
        {
            Capability.REFRESH_TOKEN,
            Capability.ACCOUNTS,
            Capability.BALANCES,
            Capability.POSITIONS,
            Capability.TRANSACTIONS,
            Capability.USER_PREFERENCE,
        }
    )
    # The spec says "1 year"; 365 days stays inside it even across a leap day.
    max_window = timedelta(days=365)
    max_rows_per_call = 3000
    #: Seven days from the interactive login; refreshing does not extend it.
    refresh_token_max_age: timedelta | None = timedelta(days=7)

    def __init__(
        self,
        settings: Settings,
        kv: KeyValueStore | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        http: ProviderHttpClient | None = None,
        sleep: Sleep = asyncio.sleep,
        rand: Rand = random.random,
    ) -> None:
        self._app_key = settings.schwab_app_key
        self._app_secret = settings.schwab_app_secret
        self._redirect_uri = settings.schwab_redirect_uri
        self._auth_base = settings.schwab_auth_base_url.rstrip("/")
        self._api_base = settings.schwab_api_base_url.rstrip("/")
        self._http = http or create_provider_http(
            KEY,
            settings,
            kv,
            requests_per_minute=settings.schwab_requests_per_minute,
            correlation_header=CORRELATION_HEADER,
            is_transient=schwab_errors.is_transient,
            transport=transport,
            sleep=sleep,
            rand=rand,
        )

    def __repr__(self) -> str:
        return f"SchwabProvider(configured={self.is_configured}, api={self._api_base!r})"

    # --- configuration -------------------------------------------------------------------
    @property
    def is_configured(self) -> bool:
        """True when both the App Key and the App Secret are set."""
        return bool(
            self._app_key
            and self._app_key.get_secret_value().strip()
            and self._app_secret
            and self._app_secret.get_secret_value().strip()
        )

    @property
    def http(self) -> ProviderHttpClient:
        """The shared HTTP client (exposed for tests and diagnostics)."""
        return self._http

    def _credentials(self) -> tuple[str, str]:
        if not self.is_configured:
            raise ProviderNotConfigured(provider=KEY, reason="missing_app_credentials")
        assert self._app_key is not None and self._app_secret is not None
        return self._app_key.get_secret_value(), self._app_secret.get_secret_value()

    # --- OAuth ---------------------------------------------------------------------------
    def authorization_url(self, *, state: str, code_challenge: str | None = None) -> str:
        """The Schwab login URL for the account holder's browser.

        Args:
            state: Our single-use state, echoed back on the callback.
            code_challenge: Not supported by Schwab (no `pkce` capability); passing one is a
                caller bug, refused so nobody believes PKCE protects this flow.

        Returns:
            The authorize URL.

        Raises:
            ProviderNotConfigured: App Key / Secret missing.
            ValueError: A `code_challenge` was given, or `state` is empty.
        """
        if code_challenge is not None:
            raise ValueError("Schwab does not support PKCE; check Capability.PKCE first")
        if not state:
            raise ValueError("state is required")
        client_id, _ = self._credentials()
        return oauth.authorize_url(
            self._auth_base, client_id=client_id, redirect_uri=self._redirect_uri, state=state
        )

    async def exchange_code(self, code: str, code_verifier: str | None = None) -> TokenSet:
        """Trade the callback's authorization code for tokens.

        Sent at most once unless the connection provably never opened: the code is
        single-use, so retrying after a timeout or a 5xx could burn it and turn a success we
        never saw into a confusing `invalid_grant`.

        Raises:
            ProviderNotConfigured: App Key / Secret missing.
            AuthorizationFailed: Schwab refused the code (used, expired, redirect mismatch,
                or our client credentials).
            ProviderUnavailable: Schwab down, edge-blocked, or no answer in time.
            ProviderRateLimited: 429 or our request budget exhausted.
            ProviderBadResponse: A 2xx we cannot read.
        """
        if code_verifier is not None:
            raise ValueError("Schwab does not support PKCE; check Capability.PKCE first")
        if not code or not code.strip():
            raise ValueError("code is required")
        app_key, app_secret = self._credentials()
        sent_at = utcnow()
        response = await self._send(
            "POST",
            oauth.token_url(self._auth_base),
            data=oauth.exchange_body(code, self._redirect_uri),
            auth=oauth.client_auth(app_key, app_secret),
            retry=RetryMode.UNSENT_ONLY,
            operation="token.exchange",
            # Schwab's 120/min covers Trader API calls; a code lives 30 s and must not wait.
            budgeted=False,
        )
        if not response.is_success:
            error = schwab_errors.exchange_failure(response)
            self._log_token_failure("token.exchange", response, error)
            raise error
        return self._tokens(response, sent_at)

    async def refresh(self, refresh_token: str) -> TokenSet:
        """Get a new access token with the refresh token.

        Retried like a read: Schwab does not rotate refresh tokens (the reply repeats the
        same one), so a refresh repeated after a lost reply only mints another access token.

        Raises:
            ProviderNotConfigured: App Key / Secret missing.
            ReauthRequired: The refresh token is dead (7-day expiry, superseded by a newer
                login, revoked) or the client was refused. Never retried.
            ProviderUnavailable: Schwab down, edge-blocked, or no answer in time.
            ProviderRateLimited: 429 or our request budget exhausted.
            ProviderBadResponse: A 2xx we cannot read.
        """
        if not refresh_token:
            raise ValueError("refresh_token is required")
        app_key, app_secret = self._credentials()
        sent_at = utcnow()
        response = await self._send(
            "POST",
            oauth.token_url(self._auth_base),
            data=oauth.refresh_body(refresh_token),
            auth=oauth.client_auth(app_key, app_secret),
            retry=RetryMode.ALL,
            operation="token.refresh",
            # Schwab's 120/min covers Trader API calls; a code lives 30 s and must not wait.
            budgeted=False,
        )
        if not response.is_success:
            error = schwab_errors.refresh_failure(response)
            self._log_token_failure("token.refresh", response, error)
            raise error
        return self._tokens(response, sent_at)

    def _tokens(self, response: httpx.Response, sent_at: datetime) -> TokenSet:
        try:
            return oauth.parse_token_response(response, issued_at=sent_at)
        except MalformedPayload as exc:
            raise ProviderBadResponse(provider=KEY, reason="malformed_token_reply") from exc

    def _log_token_failure(
        self, operation: str, response: httpx.Response, error: ProviderError
    ) -> None:
        # Codes only: Schwab's descriptions embed token digests.
        log_event(
            logger,
            "provider.token.failed",
            logging.WARNING,
            provider=KEY,
            operation=operation,
            status=response.status_code,
            error_type=type(error).__name__,
            reason=error.reason,
            correl_id=response.headers.get(CORRELATION_HEADER),
        )

    # --- Trader API ----------------------------------------------------------------------
    async def account_numbers(self, access_token: str) -> list[AccountRef]:
        """The exposed accounts as `AccountRef(hash, last4)`; plain numbers stay here.

        Raises:
            AccessTokenRejected: 401 (refresh once, then retry once).
            ProviderBadResponse: Not a list of `{accountNumber, hashValue}`.
        """
        refs: list[AccountRef] = []
        for number, account_hash in (await self._number_map(access_token)).items():
            refs.append(AccountRef(hash=account_hash, number_last4=last4(number)))
        return refs

    async def _number_map(self, access_token: str) -> dict[str, str]:
        body = await self._get_json(
            access_token, "/accounts/accountNumbers", operation="accounts.numbers"
        )
        if not isinstance(body, list):
            raise ProviderBadResponse(provider=KEY, reason="account_numbers_not_a_list")
        mapping: dict[str, str] = {}
        for item in body:
            if not isinstance(item, dict):
                raise ProviderBadResponse(provider=KEY, reason="account_number_not_an_object")
            number, account_hash = item.get("accountNumber"), item.get("hashValue")
            if not isinstance(number, str | int) or not isinstance(account_hash, str):
                raise ProviderBadResponse(provider=KEY, reason="account_number_fields")
            if not str(number) or not account_hash:
                raise ProviderBadResponse(provider=KEY, reason="account_number_fields")
            mapping[str(number)] = account_hash
        return mapping

    async def accounts(self, access_token: str, *, with_positions: bool = True) -> list[Payload]:
        """Every exposed account with balances (and positions), labelled with its hash.

        Costs two requests: `/accounts/accountNumbers` supplies the hash for each account,
        because `/accounts` only carries the plain number we must not pass upward.

        Returns:
            `Account` payloads; each `securitiesAccount` has `accountHash` and
            `accountNumberLast4` instead of `accountNumber`.
        """
        numbers = await self._number_map(access_token)
        body = await self._get_json(
            access_token,
            "/accounts",
            params=self._fields(with_positions),
            operation="accounts.list",
        )
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise ProviderBadResponse(provider=KEY, reason="accounts_not_a_list")
        scrubbed: list[Payload] = scrub_account_numbers(body, hashes=numbers)
        return scrubbed

    async def account(
        self, access_token: str, account_hash: str, *, with_positions: bool = True
    ) -> Payload:
        """One account by hash (same shape as an item of `accounts`).

        Raises:
            ProviderRequestRejected: Unknown hash (Schwab: `Invalid account number`).
        """
        body = await self._get_json(
            access_token,
            f"/accounts/{self._segment(account_hash)}",
            params=self._fields(with_positions),
            operation="accounts.get",
        )
        if isinstance(body, list) and len(body) == 1:
            body = body[0]
        if not isinstance(body, dict):
            raise ProviderBadResponse(provider=KEY, reason="account_not_an_object")
        scrubbed: Payload = scrub_account_numbers(body, account_hash=account_hash)
        return scrubbed

    async def transactions(
        self,
        access_token: str,
        account_hash: str,
        start: datetime,
        end: datetime,
        types: Sequence[str] | None = None,
    ) -> list[Payload]:
        """Transactions of one account in one window of at most `max_window`.

        No paging exists upstream: a result of `max_rows_per_call` rows may be truncated, and
        the caller (the sync engine) must split the window and ask again.

        Args:
            access_token: Bearer token.
            account_hash: The account's hash.
            start: Window start (timezone-aware).
            end: Window end (timezone-aware), after `start`.
            types: Transaction types to ask for; default all of them.

        Raises:
            ValueError: Naive datetimes, an empty or over-long window, unknown types.
        """
        start_text, end_text = format_schwab_time(start), format_schwab_time(end)
        if end <= start:
            raise ValueError("end must be after start")
        if end - start > self.max_window:
            raise ValueError(f"window longer than {self.max_window.days} days; split it")
        wanted = tuple(types) if types else TRANSACTION_TYPES
        unknown = sorted(set(wanted) - set(TRANSACTION_TYPES))
        if unknown:
            raise ValueError(f"unknown transaction types: {', '.join(unknown)}")
        response = await self._get_ok(
            access_token,
            f"/accounts/{self._segment(account_hash)}/transactions",
            params={"startDate": start_text, "endDate": end_text, "types": ",".join(wanted)},
            operation="transactions.list",
        )
        # The usual reply is scrubbed and decoded straight from its text (a sync reads many
        # thousands of these); anything unusual goes the general way below.
        fast = read_transactions(response.content, account_hash)
        if fast is not None:
            return fast
        body = self._decoded(response)
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise ProviderBadResponse(provider=KEY, reason="transactions_not_a_list")
        scrubbed: list[Payload] = scrub_account_numbers(body, account_hash=account_hash)
        return scrubbed

    async def transaction(
        self, access_token: str, account_hash: str, transaction_id: str | int
    ) -> Payload:
        """One transaction by `activityId` (the reply may be an object or a 1-item array)."""
        text_id = str(transaction_id)
        if not text_id.isdigit():
            raise ValueError("transaction ids are numeric")
        body = await self._get_json(
            access_token,
            f"/accounts/{self._segment(account_hash)}/transactions/{text_id}",
            operation="transactions.get",
        )
        if isinstance(body, list):
            if not body:
                raise ProviderRequestRejected(
                    "The institution has no such transaction.",
                    provider=KEY,
                    reason="not_found",
                    status=404,
                )
            body = body[0]
        if not isinstance(body, dict):
            raise ProviderBadResponse(provider=KEY, reason="transaction_not_an_object")
        scrubbed: Payload = scrub_account_numbers(body, account_hash=account_hash)
        return scrubbed

    async def user_preference(self, access_token: str) -> Payload:
        """The holder's preferences (an object in practice, an array per the spec)."""
        body = await self._get_json(access_token, "/userPreference", operation="preferences")
        if isinstance(body, list):
            body = body[0] if body else {}
        if not isinstance(body, dict):
            raise ProviderBadResponse(provider=KEY, reason="preferences_not_an_object")
        scrubbed: Payload = scrub_account_numbers(body)
        return scrubbed

    # --- plumbing ------------------------------------------------------------------------
    @staticmethod
    def _fields(with_positions: bool) -> dict[str, str]:
        return {"fields": "positions"} if with_positions else {}

    @staticmethod
    def _segment(account_hash: str) -> str:
        if not account_hash:
            raise ValueError("account_hash is required")
        # Encode everything: a hash is opaque, and a stray "/" or "?" must not change the route.
        return quote(account_hash, safe="")

    async def _get_json(
        self,
        access_token: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        operation: str,
    ) -> Any:
        response = await self._get_ok(access_token, path, params=params, operation=operation)
        return self._decoded(response)

    @staticmethod
    def _decoded(response: httpx.Response) -> Any:
        try:
            return decode_json(response)
        except MalformedPayload as exc:
            raise ProviderBadResponse(provider=KEY, reason="malformed_json") from exc

    async def _get_ok(
        self,
        access_token: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        operation: str,
    ) -> httpx.Response:
        """GET an API path; a failure is logged and raised as the matching provider error."""
        if not access_token:
            raise ValueError("access_token is required")
        response = await self._send(
            "GET",
            self._api_base + path,
            params=params,
            headers={"Authorization": f"Bearer {access_token}"},
            retry=RetryMode.ALL,
            operation=operation,
        )
        if not response.is_success:
            error = schwab_errors.data_failure(response)
            log_event(
                logger,
                "provider.call.failed",
                logging.WARNING,
                provider=KEY,
                operation=operation,
                status=response.status_code,
                error_type=type(error).__name__,
                reason=error.reason,
                upstream_message=schwab_errors.api_error_message(response),
                correl_id=response.headers.get(CORRELATION_HEADER),
            )
            raise error
        return response

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        auth: httpx.Auth | None = None,
        retry: RetryMode,
        operation: str,
        budgeted: bool = True,
    ) -> httpx.Response:
        """Send through the shared client, turning transport failures into typed errors."""
        try:
            return await self._http.send(
                method,
                url,
                params=params,
                headers=headers,
                data=data,
                auth=auth,
                retry=retry,
                operation=operation,
                budgeted=budgeted,
            )
        except RequestBudgetExhausted as exc:
            raise ProviderRateLimited(
                provider=KEY, reason="request_budget", retry_after=exc.retry_after
            ) from exc
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable(provider=KEY, reason="timeout", timeout=True) from exc
        except httpx.TransportError as exc:
            reason = "tls_verification_failed" if is_certificate_error(exc) else "connection"
            raise ProviderUnavailable(provider=KEY, reason=reason) from exc

    async def aclose(self) -> None:
        """Close the HTTP client's connections."""
        await self._http.aclose()
