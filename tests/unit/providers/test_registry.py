"""The provider registry: lookup, public descriptions, shutdown, and its place in the app."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashtam.core.config import Settings
from dashtam.core.kv import MemoryKeyValueStore
from dashtam.core.state import AppResources
from dashtam.main import build_resources
from dashtam.providers.errors import UnknownProvider
from dashtam.providers.registry import ProviderRegistry, build_registry, registry_from
from dashtam.providers.schwab import SchwabProvider
from tests.conftest import make_settings


def configured_settings(tmp_root: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"schwab_app_key": "K" * 32, "schwab_app_secret": "S" * 16}
    values.update(overrides)
    return make_settings(tmp_root, **values)


class TestBuildRegistry:
    def test_schwab_is_registered_and_described(self, tmp_root: Path) -> None:
        registry = build_registry(configured_settings(tmp_root), None)
        assert isinstance(registry.get("schwab"), SchwabProvider)
        assert "schwab" in registry and len(registry) == 1
        assert registry.describe() == [
            {
                "key": "schwab",
                "name": "Charles Schwab",
                "auth_type": "oauth2",
                "configured": True,
                "capabilities": [
                    "accounts",
                    "balances",
                    "positions",
                    "refresh_token",
                    "transactions",
                    "user_preference",
                ],
            }
        ]

    def test_unconfigured_provider_is_listed_as_such(self, tmp_root: Path) -> None:
        registry = build_registry(make_settings(tmp_root), None)
        assert registry.describe()[0]["configured"] is False

    def test_unknown_key_raises_unknown_provider(self, tmp_root: Path) -> None:
        registry = build_registry(make_settings(tmp_root), None)
        with pytest.raises(UnknownProvider):
            registry.get("plaid")
        assert registry.find("plaid") is None

    def test_duplicate_keys_are_refused(self, tmp_root: Path) -> None:
        settings = make_settings(tmp_root)
        registry = ProviderRegistry([SchwabProvider(settings)])
        with pytest.raises(ValueError, match="twice"):
            registry.register(SchwabProvider(settings))

    async def test_aclose_closes_every_http_client(self, tmp_root: Path) -> None:
        registry = build_registry(make_settings(tmp_root), None)
        provider = registry.get("schwab")
        assert isinstance(provider, SchwabProvider)
        await registry.aclose()
        assert provider.http.client.is_closed


class TestRegistryFrom:
    async def test_built_once_and_closed_with_the_resources(self, tmp_root: Path) -> None:
        settings = make_settings(
            tmp_root, database_url="sqlite+aiosqlite:///:memory:", redis_url=None
        )
        resources = await build_resources(settings)
        registry = resources.extras["providers"]
        assert registry_from(resources) is registry
        provider = registry.get("schwab")
        await resources.close()
        assert provider.http.client.is_closed

    async def test_builds_lazily_for_hand_made_resources(self, tmp_root: Path) -> None:
        settings = make_settings(tmp_root, database_url="sqlite+aiosqlite:///:memory:")
        resources = AppResources(
            settings=settings,
            engine=None,  # type: ignore[arg-type]  # the registry never touches the database
            session_factory=None,  # type: ignore[arg-type]
            kv=MemoryKeyValueStore(),
        )
        registry = registry_from(resources)
        assert registry_from(resources) is registry
        assert len(resources.closers) == 1
        await resources.closers[0]()
        assert registry.get("schwab").http.client.is_closed  # type: ignore[attr-defined]
