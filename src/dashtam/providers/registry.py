"""The providers this server offers, by key, built once per application from settings.

`build_registry` runs in the lifespan (`resources.extras["providers"]`); its `aclose` closes
every provider's HTTP client at shutdown. `registry_from(resources)` returns that registry
and builds it on first use when the resources were assembled elsewhere (tests, jobs).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import httpx

from dashtam.core.config import Settings
from dashtam.core.kv import KeyValueStore
from dashtam.core.state import AppResources
from dashtam.providers.base import Provider
from dashtam.providers.errors import UnknownProvider
from dashtam.providers.schwab import SchwabProvider

EXTRAS_KEY = "providers"


class ProviderRegistry:
    """Providers by key, in registration order."""

    def __init__(self, providers: Iterable[Provider] = ()) -> None:
        self._providers: dict[str, Provider] = {}
        for provider in providers:
            self.register(provider)

    def register(self, provider: Provider) -> None:
        """Add a provider.

        Raises:
            ValueError: The key is taken.
        """
        if provider.key in self._providers:
            raise ValueError(f"provider {provider.key!r} registered twice")
        self._providers[provider.key] = provider

    def get(self, key: str) -> Provider:
        """The provider for `key`.

        Raises:
            UnknownProvider: No such provider.
        """
        try:
            return self._providers[key]
        except KeyError:
            raise UnknownProvider(provider=key, reason="unknown_provider") from None

    def find(self, key: str) -> Provider | None:
        """The provider for `key`, or None."""
        return self._providers.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._providers

    def __iter__(self) -> Iterator[Provider]:
        return iter(self._providers.values())

    def __len__(self) -> int:
        return len(self._providers)

    def all(self) -> list[Provider]:
        """Every provider, in registration order."""
        return list(self._providers.values())

    @staticmethod
    def describe_provider(provider: Provider) -> dict[str, Any]:
        """The public description of one provider (`GET /provider-types/{key}`)."""
        return {
            "key": provider.key,
            "name": provider.display_name,
            "auth_type": provider.auth_type.value,
            "configured": provider.is_configured,
            "capabilities": sorted(c.value for c in provider.capabilities),
        }

    def describe(self) -> list[dict[str, Any]]:
        """Descriptions of every provider (`GET /provider-types`)."""
        return [self.describe_provider(p) for p in self._providers.values()]

    async def aclose(self) -> None:
        """Close every provider's HTTP client (all of them, even if one fails)."""
        errors: list[BaseException] = []
        for provider in self._providers.values():
            try:
                await provider.aclose()
            except Exception as exc:  # noqa: BLE001 - close the rest, then report
                errors.append(exc)
        if errors:
            raise errors[0]


def build_registry(
    settings: Settings,
    kv: KeyValueStore | None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ProviderRegistry:
    """Every provider this build knows, configured or not (unconfigured ones say so).

    Args:
        settings: Provider credentials, URLs, timeouts.
        kv: Shared store for request budgets.
        transport: Replacement HTTP transport for every provider (tests point it at the
            simulator's ASGI app).

    Returns:
        The registry; close it with `aclose()`.
    """
    return ProviderRegistry([SchwabProvider(settings, kv, transport=transport)])


def registry_from(resources: AppResources) -> ProviderRegistry:
    """The application's registry, built (and registered for closing) on first use."""
    registry = resources.extras.get(EXTRAS_KEY)
    if registry is None:
        registry = build_registry(resources.settings, resources.kv)
        resources.extras[EXTRAS_KEY] = registry
        resources.add_closer(registry.aclose)
    assert isinstance(registry, ProviderRegistry)
    return registry
