"""Which mapping layer turns a provider's raw payloads into normalised records.

Providers never normalise (they return raw payloads); each institution has a pure mapping
module. The engine looks the pair up here by provider key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from dashtam.models.financial import AccountSnapshot, TransactionData
from dashtam.providers.schwab import mapping as schwab_mapping


class Normaliser(Protocol):
    """Maps one institution's payloads."""

    def accounts(
        self, payloads: Sequence[Mapping[str, Any]], preferences: Mapping[str, Any] | None
    ) -> list[AccountSnapshot]:
        """Accounts with balances and positions."""

    def transactions(self, payloads: Sequence[Mapping[str, Any]]) -> list[TransactionData]:
        """One window's transactions, one record per external id."""

    def oldest_time(self, payloads: Sequence[Mapping[str, Any]]) -> datetime | None:
        """When the oldest of these transactions happened (None if none can be read)."""


@dataclass(frozen=True)
class SchwabNormaliser:
    """`providers.schwab.mapping`."""

    def accounts(
        self, payloads: Sequence[Mapping[str, Any]], preferences: Mapping[str, Any] | None
    ) -> list[AccountSnapshot]:
        """Accounts with nicknames and IRA detection from the user preferences."""
        return schwab_mapping.map_accounts(payloads, preferences)

    def transactions(self, payloads: Sequence[Mapping[str, Any]]) -> list[TransactionData]:
        """Transactions (duplicates of one activity id keep the last)."""
        return schwab_mapping.map_transactions(payloads)

    def oldest_time(self, payloads: Sequence[Mapping[str, Any]]) -> datetime | None:
        """The oldest `time` among the payloads (cheap: no full mapping)."""
        return schwab_mapping.oldest_transaction_time(payloads)


_NORMALISERS: dict[str, Normaliser] = {"schwab": SchwabNormaliser()}


class NoNormaliser(LookupError):
    """No mapping layer is registered for a provider key."""


def normaliser_for(provider_key: str) -> Normaliser:
    """The mapping layer of `provider_key`.

    Raises:
        NoNormaliser: Unknown key.
    """
    try:
        return _NORMALISERS[provider_key]
    except KeyError:
        raise NoNormaliser(provider_key) from None
