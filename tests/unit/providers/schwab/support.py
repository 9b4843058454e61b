"""Builders for Schwab provider unit tests (a provider over a mock transport)."""

from __future__ import annotations

from pathlib import Path

import httpx

from dashtam.providers.schwab import SchwabProvider
from tests.conftest import make_settings
from tests.unit.providers.support import SleepRecorder

APP_KEY = "K" * 32
APP_SECRET = "APPSECRETVALUE16"
AUTH_BASE = "https://schwab.test/v1/oauth"
API_BASE = "https://schwab.test/trader/v1"
REDIRECT_URI = "https://127.0.0.1:8182"


def make_schwab(
    tmp_root: Path,
    transport: httpx.AsyncBaseTransport,
    *,
    rand: float = 0.5,
    **overrides: object,
) -> tuple[SchwabProvider, SleepRecorder]:
    """A configured Schwab provider whose HTTP goes to `transport`; sleeps are recorded."""
    values: dict[str, object] = {
        "schwab_app_key": APP_KEY,
        "schwab_app_secret": APP_SECRET,
        "schwab_auth_base_url": AUTH_BASE,
        "schwab_api_base_url": API_BASE,
        "schwab_redirect_uri": REDIRECT_URI,
    }
    values.update(overrides)
    settings = make_settings(tmp_root, **values)
    sleeps = SleepRecorder()
    provider = SchwabProvider(settings, None, transport=transport, sleep=sleeps, rand=lambda: rand)
    return provider, sleeps
