"""Sync-engine benchmarks (the whale): `python -m bench.scenarios.sync`.

The whale's initial sync is a batch job, not an HTTP load, so it does not fit the wrk-driven
scenario kinds; this module measures it directly and prints the figures with their targets:

* initial sync of `whale` (≥ 100k transactions) into PostgreSQL, transactions/s, next to a raw
  asyncpg `COPY` of the same normalised rows (target ≥ 25 %);
* peak RSS of the syncing process (target ≤ 300 MB);
* re-sync of `whale` with nothing new (target ≤ 10 % of the initial sync's time).

The simulator runs as a live process (plain HTTP on a local port, so TLS costs are the same for
both sides: none). `SCENARIOS` is empty: nothing here is driven by the harness.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx

SCENARIOS: tuple[object, ...] = ()

DB_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/dashtam_bench_sync"
)
SIM_PORT = 18443
CLIENT_ID = "BenchClientId0123456789abcdef012"
CLIENT_SECRET = "BenchClientSecret0123456789abcdef0123456789abcdef0123456789abcd"
REDIRECT = "https://127.0.0.1:8182"
START = datetime(2025, 6, 16, 12, 0, tzinfo=UTC)


def _start_simulator(workdir: Path) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS"))},
        "ENVIRONMENT": "development",
        "TLS_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "VAR_DIR": str(workdir / "sim-var"),
        "SIMULATOR_CLIENT_ID": CLIENT_ID,
        "SIMULATOR_CLIENT_SECRET": CLIENT_SECRET,
        "SIMULATOR_REDIRECT_URIS": REDIRECT,
        "SIMULATOR_START_TIME": START.isoformat(),
        "SIMULATOR_RATE_LIMIT": "100000",
    }
    return subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "dashtam", "simulator", "--port", str(SIM_PORT)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "simulator.log", "wb"),  # noqa: SIM115
    )


async def _wait_up(base: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                if (await client.get(base + "/control/clock")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("simulator did not start")


async def _login_code(base: str) -> str:
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.post(
            "/v1/oauth/authorize",
            data={
                "client_id": CLIENT_ID,
                "redirect_uri": REDIRECT,
                "username": "whale",
                "password": "whale-password",
                "state": "bench",
                "action": "login",
            },
        )
        return parse_qs(urlsplit(response.headers["location"]).query)["code"][0]


async def main() -> None:  # noqa: PLR0915 - a linear measurement script
    """Run the measurements and print the figures."""
    from dashtam.core.config import Settings, generate_encryption_key, generate_secret_key
    from dashtam.core.database import session_scope
    from dashtam.core.migrations import upgrade_to_head
    from dashtam.core.types import utcnow
    from dashtam.main import build_resources
    from dashtam.models.financial import SyncTrigger
    from dashtam.models.provider import Provider
    from dashtam.models.user import User
    from dashtam.services.connections.context import providers_of, vault_of
    from dashtam.services.connections.tokens import store_new_tokens
    from dashtam.services.sync import runs
    from dashtam.services.sync.engine import SyncEngine

    workdir = Path("bench/results/sync")
    workdir.mkdir(parents=True, exist_ok=True)
    plain = DB_URL.replace("postgresql+asyncpg://", "postgresql://")
    name = plain.rsplit("/", 1)[1]
    assert "bench" in name
    admin = await asyncpg.connect(plain.rsplit("/", 1)[0] + "/postgres")
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    await asyncio.to_thread(upgrade_to_head, DB_URL)

    base = f"http://127.0.0.1:{SIM_PORT}"
    sim = _start_simulator(workdir)
    try:
        await _wait_up(base)
        settings = Settings(
            environment="test",
            database_url=DB_URL,
            secret_key=generate_secret_key(),
            encryption_keys=generate_encryption_key("b1"),
            var_dir=workdir / "var",
            log_level="WARNING",
            schwab_app_key=CLIENT_ID,
            schwab_app_secret=CLIENT_SECRET,
            schwab_redirect_uri=REDIRECT,
            schwab_auth_base_url=base + "/v1/oauth",
            schwab_api_base_url=base + "/trader/v1",
            schwab_requests_per_minute=100_000,
            sync_initial_history_days=6 * 366 + 2,
        )
        resources = await build_resources(settings)
        provider_client = providers_of(resources).get("schwab")
        tokens = await provider_client.exchange_code(await _login_code(base))
        async with session_scope(resources.session_factory) as session:
            user = User(
                email="whale@example.com",
                name="Whale",
                password_hash="x",
                email_verified_at=utcnow(),
                is_active=True,
            )
            session.add(user)
            await session.flush()
            provider = Provider(
                user_id=user.id,
                provider_key="schwab",
                alias="whale",
                status="active",
                connected_at=utcnow(),
            )
            session.add(provider)
            await session.flush()
            await store_new_tokens(
                session,
                vault_of(resources),
                provider_id=provider.id,
                tokens=tokens,
                refresh_max_age=provider_client.refresh_token_max_age,
                now=utcnow(),
            )
            user_id, provider_id = user.id, provider.id

        def clock() -> datetime:
            return START

        async def one_sync() -> tuple[float, object]:
            async with session_scope(resources.session_factory) as session:
                run, _ = await runs.create_or_get_active(
                    session,
                    user_id=user_id,
                    provider_id=provider_id,
                    trigger=SyncTrigger.MANUAL,
                    now=utcnow(),
                )
            started = time.perf_counter()
            outcome = await SyncEngine(resources, clock=clock).run(run.id)
            return time.perf_counter() - started, outcome

        initial_s, initial = await one_sync()
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        resync_s, resync = await one_sync()

        # Reference: raw asyncpg COPY of the same normalised rows into a bare copy of the table.
        conn = await asyncpg.connect(plain)
        records = await conn.fetch("SELECT * FROM transactions")
        columns = list(records[0].keys())
        await conn.execute(
            "CREATE TABLE transactions_copy (LIKE transactions INCLUDING DEFAULTS INCLUDING "
            "CONSTRAINTS INCLUDING INDEXES)"
        )
        rows = [tuple(r[c] for c in columns) for r in records]
        started = time.perf_counter()
        await conn.copy_records_to_table("transactions_copy", records=rows, columns=columns)
        copy_s = time.perf_counter() - started
        await conn.close()
        await resources.close()
    finally:
        sim.terminate()
        sim.wait(10)

    count = len(rows)
    sync_rate = count / initial_s
    copy_rate = count / copy_s
    print(f"whale transactions: {count}; initial sync outcome: {initial}")
    print(
        f"initial sync: {initial_s:.1f} s = {sync_rate:,.0f} tx/s; raw COPY {copy_s:.2f} s = "
        f"{copy_rate:,.0f} tx/s; ratio {sync_rate / copy_rate:.1%} (target >= 25%)"
    )
    print(f"peak RSS of the syncing process: {rss_mb:.0f} MB (target <= 300 MB)")
    print(
        f"re-sync unchanged: {resync_s:.1f} s = {resync_s / initial_s:.1%} of the initial "
        f"(target <= 10%); outcome {resync}"
    )


if __name__ == "__main__":
    asyncio.run(main())
