"""Shared building blocks of the connections services, taken from (or added to) the resources.

The API's lifespan puts the vault, rate limiter and provider registry in `resources.extras`;
jobs, the CLI and tests may assemble resources without them, so each accessor builds the
missing piece once and caches it there.
"""

from __future__ import annotations

from dashtam.core.config import ConfigurationError
from dashtam.core.crypto import TokenVault
from dashtam.core.ratelimit import RateLimiter
from dashtam.core.state import AppResources
from dashtam.core.tokens import KeyedHasher, build_keyed_hasher
from dashtam.providers.registry import ProviderRegistry, registry_from

VAULT_KEY = "vault"
HASHER_KEY = "keyed_hasher"
LIMITER_KEY = "rate_limiter"


def vault_of(resources: AppResources) -> TokenVault:
    """The token vault (built from `ENCRYPTION_KEYS` on first use)."""
    vault = resources.extras.get(VAULT_KEY)
    if vault is None:
        keys = (
            resources.settings.encryption_keys
            or resources.settings.ensure_secrets().encryption_keys
        )
        if keys is None:
            raise ConfigurationError("ENCRYPTION_KEYS is not set")
        vault = TokenVault.from_setting(keys.get_secret_value())
        resources.extras[VAULT_KEY] = vault
    assert isinstance(vault, TokenVault)
    return vault


def hasher_of(resources: AppResources) -> KeyedHasher:
    """The keyed hasher for opaque tokens (OAuth states here)."""
    hasher = resources.extras.get(HASHER_KEY)
    if hasher is None:
        hasher = build_keyed_hasher(resources.settings)
        resources.extras[HASHER_KEY] = hasher
    assert isinstance(hasher, KeyedHasher)
    return hasher


def limiter_of(resources: AppResources) -> RateLimiter:
    """The application's rate limiter (Redis-backed when configured)."""
    limiter = resources.extras.get(LIMITER_KEY)
    if limiter is None:
        settings = resources.settings
        limiter = RateLimiter(
            redis_url=settings.redis_url,
            enabled=settings.rate_limit_enabled,
            pool_timeout=settings.redis_pool_timeout,
            socket_timeout=settings.redis_socket_timeout,
        )
        resources.extras[LIMITER_KEY] = limiter
        resources.add_closer(limiter.aclose)
    assert isinstance(limiter, RateLimiter)
    return limiter


def providers_of(resources: AppResources) -> ProviderRegistry:
    """The provider registry."""
    return registry_from(resources)
