"""Errors the financial read services raise (rendered as problem+json by the app)."""

from __future__ import annotations

from dashtam.core.errors import NotFound, UnprocessableEntity


class InvalidCursor(UnprocessableEntity):
    """422: the cursor is malformed, tampered with, or belongs to another list."""

    code = "invalid_cursor"
    title = "Invalid cursor"


class InvalidFilter(UnprocessableEntity):
    """422: the filters contradict each other (e.g. `since` after `until`)."""

    code = "invalid_filter"
    title = "Invalid filter"


class AccountNotFound(NotFound):
    """404: no such account, or not the caller's."""

    code = "account_not_found"
    title = "Account not found"


class TransactionNotFound(NotFound):
    """404: no such transaction, or not the caller's."""

    code = "transaction_not_found"
    title = "Transaction not found"


class ProviderNotFound(NotFound):
    """404: no such provider connection, or not the caller's."""

    code = "provider_not_found"
    title = "Provider not found"
