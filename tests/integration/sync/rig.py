"""A test rig: the real engine, the real Schwab client and the simulator (in-process ASGI).

`sync_rig(...)` yields a `SyncRig` with a user whose provider is connected to a simulator user
through the real OAuth flow (browser login, code exchange, sealed tokens). The engine runs on
the simulator's clock, so "now" and the simulated history agree.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dashtam.core.database import create_session_factory, session_scope
from dashtam.core.kv import KeyValueStore
from dashtam.core.state import AppResources
from dashtam.core.types import utcnow
from dashtam.models.financial import Account, SyncTrigger, Transaction
from dashtam.providers.registry import ProviderRegistry
from dashtam.providers.schwab import SchwabProvider
from dashtam.services.connections.context import vault_of
from dashtam.services.connections.tokens import store_new_tokens
from dashtam.services.sync import runs
from dashtam.services.sync.engine import SyncEngine, SyncOutcome
from tests.conftest import make_settings
from tests.integration.providers.browser import log_in
from tests.support.factories import seed_login
from tests.support.financial_factories import create_provider
from tests.support.simulator import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    sim_state,
    simulator_client,
)
from tests.unit.providers.support import SleepRecorder

SIM_BASE = "https://127.0.0.1:8443"


@dataclass
class SyncRig:
    """Everything a sync test needs."""

    resources: AppResources
    sim: httpx.AsyncClient
    provider: SchwabProvider
    sleeps: SleepRecorder
    user_id: uuid.UUID
    provider_id: uuid.UUID
    headers: dict[str, str]
    username: str

    def clock(self) -> datetime:
        """The simulator's current time."""
        return sim_state(self.sim).clock.now()

    def engine(self, **kwargs: Any) -> SyncEngine:
        """An engine on the simulator's clock."""
        kwargs.setdefault("rand", lambda: 0.5)
        return SyncEngine(self.resources, clock=self.clock, **kwargs)

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        """Call the simulator's control API (asserts success)."""
        response = await self.sim.request(method, "/control" + path, json=body)
        assert response.status_code < 300, response.text
        return response.json()

    async def fault(self, kind: str, count: int = 1, **extra: Any) -> None:
        """Inject a fault for the next `count` Trader API requests."""
        body = {"kind": kind, "path_prefix": "/trader/v1", "count": count, **extra}
        await self.control("POST", "/faults", body)

    async def advance(self, seconds: float) -> None:
        """Move the simulator's clock."""
        await self.control("POST", "/clock", {"advance_seconds": seconds})

    async def queue(
        self, trigger: SyncTrigger = SyncTrigger.MANUAL, now: datetime | None = None
    ) -> uuid.UUID:
        """Queue a run (or get the active one), created at `now` (default: simulator time)."""
        async with session_scope(self.resources.session_factory) as session:
            run, _ = await runs.create_or_get_active(
                session,
                user_id=self.user_id,
                provider_id=self.provider_id,
                trigger=trigger,
                now=now or self.clock(),
            )
            return run.id

    async def sync(self, **engine: Any) -> SyncOutcome:
        """Queue and run one sync to its end."""
        outcome = await self.engine(**engine).run(await self.queue())
        assert outcome is not None
        return outcome

    async def truth(self) -> dict[str, tuple[int, Decimal]]:
        """The simulator's ground truth: account hash -> (count, sum of netAmount)."""
        body = await self.control("GET", f"/users/{self.username}/summary")
        return {
            a["account_hash"]: (a["transaction_count"], Decimal(str(a["net_amount_sum"])))
            for a in body["accounts"]
        }

    async def stored(self) -> dict[str, tuple[int, Decimal]]:
        """What Dashtam holds: account hash -> (live transactions, sum of amounts)."""
        totals: dict[str, list[Any]] = defaultdict(lambda: [0, Decimal(0)])
        async with session_scope(self.resources.session_factory) as session:
            rows = await session.execute(
                select(Account.external_id, Transaction.amount)
                .join(Transaction, Transaction.account_id == Account.id)  # type: ignore[arg-type]
                .where(
                    Account.provider_id == self.provider_id,  # type: ignore[arg-type]
                    Transaction.removed_at.is_(None),  # type: ignore[union-attr]
                )
            )
            for external_id, amount in rows.all():
                totals[external_id][0] += 1
                totals[external_id][1] += amount
        return {k: (v[0], v[1]) for k, v in totals.items()}

    async def transactions(self) -> dict[str, Transaction]:
        """Every stored transaction (removed included) by external id."""
        async with session_scope(self.resources.session_factory) as session:
            rows = await session.execute(
                select(Transaction).where(
                    Transaction.provider_id == self.provider_id  # type: ignore[arg-type]
                )
            )
            return {t.external_id: t for t in rows.scalars().all()}


def rig_settings(tmp_root: Path, **overrides: object) -> Any:
    """Test settings pointing the Schwab client at the simulator."""
    values: dict[str, object] = {
        "schwab_app_key": CLIENT_ID,
        "schwab_app_secret": CLIENT_SECRET,
        "schwab_redirect_uri": REDIRECT_URI,
        "schwab_auth_base_url": SIM_BASE + "/v1/oauth",
        "schwab_api_base_url": SIM_BASE + "/trader/v1",
        "schwab_requests_per_minute": 100_000,
        "provider_max_attempts": 3,
    }
    values.update(overrides)
    return make_settings(tmp_root, **values).ensure_secrets()


async def connect(
    resources: AppResources, sim: httpx.AsyncClient, provider: SchwabProvider, username: str
) -> tuple[uuid.UUID, uuid.UUID, dict[str, str]]:
    """A Dashtam user with a provider connected to simulator user `username` (real OAuth)."""
    login = await seed_login(resources)
    callback = await log_in(
        sim,
        provider.authorization_url(state="st"),
        username=username,
        password=f"{username}-password",
    )
    assert callback.raw_code is not None
    tokens = await provider.exchange_code(callback.raw_code)
    async with session_scope(resources.session_factory) as session:
        row = await create_provider(session, user_id=login.user.id)
        await store_new_tokens(
            session,
            vault_of(resources),
            provider_id=row.id,
            tokens=tokens,
            refresh_max_age=provider.refresh_token_max_age,
            now=utcnow(),
        )
    return login.user.id, row.id, login.headers


@asynccontextmanager
async def sync_rig(
    tmp_root: Path,
    engine: AsyncEngine,
    kv: KeyValueStore,
    *,
    username: str = "demo",
    sim: dict[str, object] | None = None,
    **overrides: object,
) -> AsyncIterator[SyncRig]:
    """A connected provider, the simulator and resources wired to both."""
    settings = rig_settings(tmp_root, **overrides)
    resources = AppResources(
        settings=settings,
        engine=engine,
        session_factory=create_session_factory(engine),
        kv=kv,
    )
    sim_overrides: dict[str, object] = {"simulator_rate_limit": 100_000}
    sim_overrides.update(sim or {})
    async with simulator_client(tmp_root, **sim_overrides) as client:
        sleeps = SleepRecorder()
        provider = SchwabProvider(
            settings, kv, transport=client._transport, sleep=sleeps, rand=lambda: 0.5
        )
        resources.extras["providers"] = ProviderRegistry([provider])
        try:
            user_id, provider_id, headers = await connect(resources, client, provider, username)
            yield SyncRig(
                resources, client, provider, sleeps, user_id, provider_id, headers, username
            )
        finally:
            await provider.aclose()
