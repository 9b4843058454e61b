"""The real Schwab client against the Schwab simulator, in-process (ASGI transport).

Covers the whole OAuth dance driven like a browser, refresh in each mode the simulator offers,
every data call checked against the simulator's ground truth, and injected faults ending in
bounded retries and typed errors.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashtam.core.kv import KeyValueStore
from dashtam.core.types import utcnow
from dashtam.providers.base import RawPayload, TokenSet
from dashtam.providers.errors import (
    AccessTokenRejected,
    AuthorizationFailed,
    ProviderBadResponse,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderUnavailable,
    ReauthRequired,
)
from dashtam.providers.schwab import SchwabProvider
from tests.conftest import make_settings
from tests.integration.providers.browser import log_in
from tests.support.simulator import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    simulator_client,
)
from tests.unit.providers.support import SleepRecorder

SIM_BASE = "https://127.0.0.1:8443"


@dataclass
class Rig:
    """The provider under test, a browser/control client on the same simulator, and sleeps."""

    provider: SchwabProvider
    sim: httpx.AsyncClient
    sleeps: SleepRecorder

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.sim.request(method, "/control" + path, json=body)
        assert response.status_code < 300, response.text
        return response.json()

    async def fault(self, kind: str, path_prefix: str, count: int = 1, **extra: Any) -> None:
        await self.control(
            "POST", "/faults", {"kind": kind, "path_prefix": path_prefix, "count": count, **extra}
        )

    async def stats(self, key: str) -> int:
        counts: dict[str, int] = (await self.control("GET", "/stats"))["requests"]
        return counts.get(key, 0)

    async def tokens(self, username: str = "demo") -> TokenSet:
        callback = await log_in(
            self.sim,
            self.provider.authorization_url(state="st"),
            username=username,
            password=f"{username}-password",
        )
        assert callback.raw_code is not None
        return await self.provider.exchange_code(callback.raw_code)


@asynccontextmanager
async def rig(
    tmp_root: Path,
    kv: KeyValueStore | None = None,
    *,
    sim: dict[str, object] | None = None,
    **overrides: object,
) -> AsyncIterator[Rig]:
    values: dict[str, object] = {
        "schwab_app_key": CLIENT_ID,
        "schwab_app_secret": CLIENT_SECRET,
        "schwab_redirect_uri": REDIRECT_URI,
        "schwab_auth_base_url": SIM_BASE + "/v1/oauth",
        "schwab_api_base_url": SIM_BASE + "/trader/v1",
    }
    values.update(overrides)
    async with simulator_client(tmp_root, **(sim or {})) as client:
        sleeps = SleepRecorder()
        provider = SchwabProvider(
            make_settings(tmp_root, **values),
            kv,
            transport=client._transport,
            sleep=sleeps,
            rand=lambda: 0.5,
        )
        try:
            yield Rig(provider, client, sleeps)
        finally:
            await provider.aclose()


class TestAuthorization:
    async def test_browser_login_then_exchange_yields_schwab_tokens(
        self, tmp_root: Path, kv_store: KeyValueStore
    ) -> None:
        async with rig(tmp_root, kv_store) as r:
            url = r.provider.authorization_url(state="prov-1.s3cr3t")
            callback = await log_in(r.sim, url)
            assert callback.url.startswith(REDIRECT_URI + "/?") or callback.url.startswith(
                REDIRECT_URI + "?"
            )
            assert callback.state == "prov-1.s3cr3t"
            # The code arrives percent-encoded; the client decodes it before the exchange.
            assert callback.raw_code is not None and callback.raw_code.endswith("%40")
            tokens = await r.provider.exchange_code(callback.raw_code)
            assert tokens.expires_in == 1800
            assert tokens.refresh_token and tokens.id_token and tokens.scope == "api"
            assert tokens.access_expires_at is not None
            assert tokens.access_expires_at - utcnow() <= timedelta(seconds=1800)

    async def test_a_code_works_once(self, tmp_root: Path) -> None:
        async with rig(tmp_root) as r:
            callback = await log_in(r.sim, r.provider.authorization_url(state="s"))
            assert callback.raw_code is not None
            await r.provider.exchange_code(callback.raw_code)
            with pytest.raises(AuthorizationFailed) as caught:
                await r.provider.exchange_code(callback.raw_code)
            assert caught.value.reason == "invalid_grant"

    async def test_an_expired_code_is_refused(self, tmp_root: Path) -> None:
        async with rig(tmp_root) as r:
            callback = await log_in(r.sim, r.provider.authorization_url(state="s"))
            await r.control("POST", "/clock", {"advance_seconds": 31})
            with pytest.raises(AuthorizationFailed):
                await r.provider.exchange_code(callback.raw_code or "")

    async def test_redirect_uri_must_match_at_the_exchange(self, tmp_root: Path) -> None:
        async with (
            rig(tmp_root) as good,
            rig(tmp_root, schwab_redirect_uri=REDIRECT_URI + "/") as _,
        ):
            callback = await log_in(good.sim, good.provider.authorization_url(state="s"))
            other = SchwabProvider(
                make_settings(
                    tmp_root,
                    schwab_app_key=CLIENT_ID,
                    schwab_app_secret=CLIENT_SECRET,
                    schwab_redirect_uri=REDIRECT_URI + "/",
                    schwab_auth_base_url=SIM_BASE + "/v1/oauth",
                ),
                transport=good.sim._transport,
            )
            with pytest.raises(AuthorizationFailed):
                await other.exchange_code(callback.raw_code or "")
            await other.aclose()

    async def test_wrong_app_secret_is_flagged_as_misconfiguration(self, tmp_root: Path) -> None:
        async with rig(tmp_root, schwab_app_secret="not-the-secret-0123456789") as r:
            callback = await log_in(r.sim, r.provider.authorization_url(state="s"))
            with pytest.raises(AuthorizationFailed) as caught:
                await r.provider.exchange_code(callback.raw_code or "")
            assert caught.value.client_misconfigured is True

    async def test_cancelling_at_the_login_page_returns_access_denied(self, tmp_root: Path) -> None:
        async with rig(tmp_root) as r:
            callback = await log_in(r.sim, r.provider.authorization_url(state="s"), action="cancel")
            assert (callback.error, callback.raw_code, callback.state) == (
                "access_denied",
                None,
                "s",
            )


class TestRefresh:
    @pytest.mark.parametrize(
        ("mode", "expect"), [("same", "same"), ("rotate", "new"), ("omit", "none")]
    )
    async def test_each_refresh_mode(
        self, tmp_root: Path, kv_store: KeyValueStore, mode: str, expect: str
    ) -> None:
        async with rig(tmp_root, kv_store) as r:
            first = await r.tokens()
            await r.control("PUT", "/refresh-mode", {"mode": mode})
            second = await r.provider.refresh(first.refresh_token or "")
            assert second.access_token != first.access_token
            if expect == "same":
                assert second.refresh_token == first.refresh_token
            elif expect == "new":
                assert second.refresh_token not in (None, first.refresh_token)
            else:
                assert second.refresh_token is None
            assert len(await r.provider.account_numbers(second.access_token)) == 2

    async def test_refresh_token_dies_after_seven_days(self, tmp_root: Path) -> None:
        async with rig(tmp_root) as r:
            tokens = await r.tokens()
            await r.control("POST", "/clock", {"advance_seconds": 6 * 86400})
            await r.provider.refresh(tokens.refresh_token or "")
            await r.control("POST", "/clock", {"advance_seconds": 86400 + 1})
            with pytest.raises(ReauthRequired) as caught:
                await r.provider.refresh(tokens.refresh_token or "")
            assert caught.value.reason == "refresh_token_authentication_error"
            assert r.sleeps.delays == []

    async def test_a_newer_login_supersedes_the_old_refresh_token(self, tmp_root: Path) -> None:
        async with rig(tmp_root) as r:
            old = await r.tokens()
            await r.tokens()
            with pytest.raises(ReauthRequired):
                await r.provider.refresh(old.refresh_token or "")

    async def test_revoked_refresh_token_requires_reauth(self, tmp_root: Path) -> None:
        async with rig(tmp_root) as r:
            tokens = await r.tokens()
            await r.control("POST", "/users/demo/tokens", {"action": "revoke-refresh"})
            with pytest.raises(ReauthRequired):
                await r.provider.refresh(tokens.refresh_token or "")

    async def test_expired_access_token_is_rejected_then_refresh_fixes_it(
        self, tmp_root: Path
    ) -> None:
        async with rig(tmp_root) as r:
            tokens = await r.tokens()
            await r.control("POST", "/users/demo/tokens", {"action": "expire-access"})
            with pytest.raises(AccessTokenRejected):
                await r.provider.account_numbers(tokens.access_token)
            fresh = await r.provider.refresh(tokens.refresh_token or "")
            assert len(await r.provider.account_numbers(fresh.access_token)) == 2


def _plain_numbers(summary: dict[str, Any]) -> list[str]:
    return [a["account_number"] for a in summary["accounts"]]


class TestDataCalls:
    async def test_accounts_match_the_ground_truth_without_plain_numbers(
        self, tmp_root: Path, kv_store: KeyValueStore
    ) -> None:
        async with rig(tmp_root, kv_store) as r:
            tokens = await r.tokens()
            summary = await r.control("GET", "/users/demo/summary")
            refs = await r.provider.account_numbers(tokens.access_token)
            truth = {a["account_hash"]: a for a in summary["accounts"]}
            assert {ref.hash for ref in refs} == set(truth)
            for ref in refs:
                assert ref.number_last4 == truth[ref.hash]["account_number"][-4:]
            accounts = await r.provider.accounts(tokens.access_token)
            dumped = json.dumps(accounts, default=str)
            for number in _plain_numbers(summary):
                assert number not in dumped
            for account in accounts:
                inner = account["securitiesAccount"]
                expected = truth[inner["accountHash"]]
                assert inner["type"] == expected["type"]
                assert len(inner["positions"]) == expected["positions_count"]
                assert all(isinstance(p["marketValue"], Decimal) for p in inner["positions"])
            single = await r.provider.account(
                tokens.access_token, refs[0].hash, with_positions=False
            )
            assert single["securitiesAccount"]["accountHash"] == refs[0].hash
            assert "positions" not in single["securitiesAccount"]

    async def test_yearly_windows_add_up_to_the_ground_truth(self, tmp_root: Path) -> None:
        async with rig(tmp_root) as r:
            tokens = await r.tokens()
            summary = await r.control("GET", "/users/demo/summary")
            # The simulator runs its own clock: window over its history up to its "now".
            now = datetime.fromisoformat(summary["as_of"])
            for truth in summary["accounts"]:
                start = datetime.fromisoformat(truth["history_start"]) - timedelta(days=2)
                count, net = 0, Decimal(0)
                while start < now:
                    end = min(start + r.provider.max_window - timedelta(seconds=1), now)
                    rows = await r.provider.transactions(
                        tokens.access_token, truth["account_hash"], start, end
                    )
                    assert len(rows) < r.provider.max_rows_per_call
                    assert all(row["accountHash"] == truth["account_hash"] for row in rows)
                    # The simulator's plain replies take the text path: each row keeps its text.
                    assert all(type(row) is RawPayload for row in rows)
                    assert not any(truth["account_number"] in row.source for row in rows)
                    count += len(rows)
                    net += sum((row["netAmount"] for row in rows), Decimal(0))
                    start = end + timedelta(seconds=1)
                assert count == truth["transaction_count"]
                assert net == Decimal(str(truth["net_amount_sum"]))
                assert truth["account_number"] not in json.dumps(rows, default=str)

    @pytest.mark.parametrize("shape", ["array", "object"])
    async def test_single_transaction_in_either_shape(self, tmp_root: Path, shape: str) -> None:
        async with rig(tmp_root) as r:
            tokens = await r.tokens()
            await r.control("PUT", "/options", {"transaction_detail_shape": shape})
            (ref, *_) = await r.provider.account_numbers(tokens.access_token)
            now = datetime.fromisoformat((await r.control("GET", "/clock"))["now"])
            rows = await r.provider.transactions(
                tokens.access_token, ref.hash, now - timedelta(days=200), now
            )
            assert rows
            one = await r.provider.transaction(tokens.access_token, ref.hash, rows[0]["activityId"])
            assert one == rows[0]

    async def test_unknown_transaction_and_plain_number_are_refused(self, tmp_root: Path) -> None:
        async with rig(tmp_root) as r:
            tokens = await r.tokens()
            summary = await r.control("GET", "/users/demo/summary")
            (ref, *_) = await r.provider.account_numbers(tokens.access_token)
            with pytest.raises(ProviderRequestRejected) as caught:
                await r.provider.transaction(tokens.access_token, ref.hash, 1)
            assert caught.value.status == 404
            with pytest.raises(ProviderRequestRejected) as caught:
                await r.provider.account(tokens.access_token, _plain_numbers(summary)[0])
            assert caught.value.status == 400

    async def test_user_preference_keeps_nicknames_not_numbers(self, tmp_root: Path) -> None:
        async with rig(tmp_root) as r:
            tokens = await r.tokens()
            summary = await r.control("GET", "/users/demo/summary")
            prefs = await r.provider.user_preference(tokens.access_token)
            nicknames = {a["nickName"] for a in prefs["accounts"]}
            assert nicknames == {"Individual", "Roth Contributory IRA"}
            dumped = json.dumps(prefs, default=str)
            assert all(n not in dumped for n in _plain_numbers(summary))


class TestFaults:
    async def test_5xx_then_success_is_retried_with_backoff(self, tmp_root: Path) -> None:
        async with rig(tmp_root) as r:
            tokens = await r.tokens()
            await r.fault("status", "/trader/v1", 2, status=500)
            assert len(await r.provider.account_numbers(tokens.access_token)) == 2
            assert r.sleeps.delays == [0.25, 0.5]
            assert await r.stats("GET /trader/v1/accounts/accountNumbers") == 3

    @pytest.mark.parametrize("body", ["json", "empty", "html"])
    async def test_persistent_503_ends_in_unavailable_after_four_attempts(
        self, tmp_root: Path, body: str
    ) -> None:
        async with rig(tmp_root) as r:
            tokens = await r.tokens()
            await r.fault("status", "/trader/v1", 10, status=503, body=body)
            with pytest.raises(ProviderUnavailable) as caught:
                await r.provider.account_numbers(tokens.access_token)
            assert caught.value.status == 503
            assert await r.stats("GET /trader/v1/accounts/accountNumbers") == 4

    async def test_429_honours_retry_after_then_succeeds(self, tmp_root: Path) -> None:
        async with rig(tmp_root) as r:
            tokens = await r.tokens()
            await r.fault("status", "/trader/v1", 1, status=429, retry_after=2)
            assert len(await r.provider.account_numbers(tokens.access_token)) == 2
            assert r.sleeps.delays == [2.0]

    async def test_persistent_429_is_rate_limited(self, tmp_root: Path) -> None:
        async with rig(tmp_root) as r:
            tokens = await r.tokens()
            await r.fault("status", "/trader/v1", 10, status=429, retry_after=3)
            with pytest.raises(ProviderRateLimited) as caught:
                await r.provider.account_numbers(tokens.access_token)
            assert caught.value.retry_after == 3.0
            assert r.sleeps.delays == [3.0, 3.0, 3.0]

    async def test_malformed_body_is_a_bad_response_not_retried(self, tmp_root: Path) -> None:
        async with rig(tmp_root) as r:
            tokens = await r.tokens()
            await r.fault("malformed", "/trader/v1", 1)
            with pytest.raises(ProviderBadResponse):
                await r.provider.account(tokens.access_token, "A" * 64)
            assert r.sleeps.delays == []

    async def test_dropped_connection_is_retried_for_reads(self, tmp_root: Path) -> None:
        async with rig(tmp_root) as r:
            tokens = await r.tokens()
            await r.fault("drop", "/trader/v1", 2)
            assert len(await r.provider.account_numbers(tokens.access_token)) == 2
            assert len(r.sleeps.delays) == 2

    async def test_dropped_connection_is_not_retried_for_the_code_exchange(
        self, tmp_root: Path
    ) -> None:
        async with rig(tmp_root) as r:
            callback = await log_in(r.sim, r.provider.authorization_url(state="s"))
            await r.fault("drop", "/v1/oauth/token", 1)
            with pytest.raises(ProviderUnavailable):
                await r.provider.exchange_code(callback.raw_code or "")
            stats = await r.control("GET", "/stats")
            assert stats["token_grants"].get("authorization_code", 0) == 0
            assert r.sleeps.delays == []

    @pytest.mark.parametrize(
        ("kind", "extra"),
        [("status", {"status": 500}), ("status", {"status": 403, "body": "html"}), ("drop", {})],
    )
    async def test_refresh_survives_transient_token_endpoint_failures(
        self, tmp_root: Path, kind: str, extra: dict[str, Any]
    ) -> None:
        async with rig(tmp_root) as r:
            tokens = await r.tokens()
            await r.fault(kind, "/v1/oauth/token", 2, **extra)
            fresh = await r.provider.refresh(tokens.refresh_token or "")
            assert fresh.access_token != tokens.access_token
            assert len(r.sleeps.delays) == 2

    async def test_slow_institution_times_out_as_504_material(self, tmp_root: Path) -> None:
        async with rig(tmp_root, provider_timeout=0.1, provider_max_attempts=2) as r:
            tokens = await r.tokens()
            await r.fault("latency", "/trader/v1", 2, latency_ms=2000)
            with pytest.raises(ProviderUnavailable) as caught:
                await r.provider.account_numbers(tokens.access_token)
            assert caught.value.timeout is True

    async def test_simulator_rate_limit_surfaces_as_rate_limited(self, tmp_root: Path) -> None:
        async with rig(tmp_root, sim={"simulator_rate_limit": 2}) as r:
            tokens = await r.tokens()
            await r.provider.account_numbers(tokens.access_token)
            await r.provider.account_numbers(tokens.access_token)
            with pytest.raises(ProviderRateLimited) as caught:
                await r.provider.account_numbers(tokens.access_token)
            # The simulator asks for ~60 s, beyond our 30 s cap: reported, not slept through.
            assert caught.value.retry_after is not None and caught.value.retry_after > 30
            assert r.sleeps.delays == []

    async def test_our_budget_keeps_us_under_the_institution_limit(
        self, tmp_root: Path, kv_store: KeyValueStore
    ) -> None:
        async with rig(
            tmp_root,
            kv_store,
            sim={"simulator_rate_limit": 3},
            schwab_requests_per_minute=3,
            provider_budget_max_wait=0.0,
        ) as r:
            tokens = await r.tokens()
            for _ in range(3):
                await r.provider.account_numbers(tokens.access_token)
            with pytest.raises(ProviderRateLimited) as caught:
                await r.provider.account_numbers(tokens.access_token)
            assert caught.value.reason == "request_budget"
            stats = await r.control("GET", "/stats")
            assert stats["rate_limited"] == 0
            assert await r.stats("GET /trader/v1/accounts/accountNumbers") == 3
