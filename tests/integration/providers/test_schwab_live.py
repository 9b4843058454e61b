"""The real Schwab client against a live `dashtam simulator` process over HTTPS.

The client trusts the simulator's local CA through `PROVIDER_CA_FILE` (verification stays on);
a dropped TCP connection is a real socket abort here, not an in-process exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from dashtam.core.kv import KeyValueStore
from dashtam.providers.errors import ProviderUnavailable
from dashtam.providers.schwab import SchwabProvider
from tests.conftest import make_settings
from tests.integration.providers.browser import log_in
from tests.support.live import LiveProcess
from tests.support.simulator import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, run_simulator
from tests.unit.providers.support import SleepRecorder


@pytest.fixture(scope="module")
def live_simulator(tmp_root: Path) -> Iterator[LiveProcess]:
    """One simulator process for this module (state is reset by each test that changes it)."""
    with run_simulator(tmp_root / "live-simulator") as live:
        yield live


def make_live_provider(
    tmp_root: Path,
    live: LiveProcess,
    kv: KeyValueStore | None,
    sleeps: SleepRecorder,
    *,
    trust_local_ca: bool = True,
) -> SchwabProvider:
    settings = make_settings(
        tmp_root,
        schwab_app_key=CLIENT_ID,
        schwab_app_secret=CLIENT_SECRET,
        schwab_redirect_uri=REDIRECT_URI,
        schwab_auth_base_url=live.base_url + "/v1/oauth",
        schwab_api_base_url=live.base_url + "/trader/v1",
        provider_ca_file=live.ca_file if trust_local_ca else None,
    )
    return SchwabProvider(settings, kv, sleep=sleeps, rand=lambda: 0.0)


class TestLiveHttps:
    async def test_full_flow_over_tls(
        self, tmp_root: Path, live_simulator: LiveProcess, kv_store: KeyValueStore
    ) -> None:
        sleeps = SleepRecorder()
        provider = make_live_provider(tmp_root, live_simulator, kv_store, sleeps)
        try:
            async with live_simulator.async_client() as browser:
                await browser.post("/control/reset")
                callback = await log_in(browser, provider.authorization_url(state="live-state"))
                assert callback.state == "live-state"
                tokens = await provider.exchange_code(callback.raw_code or "")
                refreshed = await provider.refresh(tokens.refresh_token or "")
                refs = await provider.account_numbers(refreshed.access_token)
                assert len(refs) == 2
                now = datetime.fromisoformat((await browser.get("/control/clock")).json()["now"])
                rows = await provider.transactions(
                    refreshed.access_token, refs[0].hash, now - timedelta(days=90), now
                )
                assert rows and all(r["accountHash"] == refs[0].hash for r in rows)
                # A real socket abort, twice: retried, then served.
                fault = {"kind": "drop", "path_prefix": "/trader/v1", "count": 2}
                assert (await browser.post("/control/faults", json=fault)).status_code == 201
                assert len(await provider.accounts(refreshed.access_token)) == 2
                assert len(sleeps.delays) == 2
        finally:
            await provider.aclose()

    async def test_untrusted_certificate_fails_fast_without_retries(
        self, tmp_root: Path, live_simulator: LiveProcess
    ) -> None:
        sleeps = SleepRecorder()
        provider = make_live_provider(tmp_root, live_simulator, None, sleeps, trust_local_ca=False)
        try:
            with pytest.raises(ProviderUnavailable) as caught:
                await provider.account_numbers("any-token")
            assert caught.value.reason == "tls_verification_failed"
            assert sleeps.delays == []
            assert isinstance(caught.value.__cause__, httpx.ConnectError)
        finally:
            await provider.aclose()
