"""The control API: faults of every kind, stats, clock, options, guard token and reset."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from dashtam.simulator.errors import SimulatedConnectionDrop
from tests.support.simulator import (
    START_TIME,
    basic_auth,
    bearer,
    login_tokens,
    sim_state,
    simulator_client,
)


async def add_fault(sim: httpx.AsyncClient, **body: object) -> dict[str, object]:
    response = await sim.post("/control/faults", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, object] = response.json()
    return result


class TestStatusFaults:
    @pytest.mark.parametrize("status", [500, 503])
    async def test_server_errors_fire_count_times_then_stop(
        self, tmp_path: Path, status: int
    ) -> None:
        async with simulator_client(tmp_path) as sim:
            headers = bearer(await login_tokens(sim))
            await add_fault(sim, kind="status", status=status, count=2)
            codes = [
                (await sim.get("/trader/v1/accounts", headers=headers)).status_code
                for _ in range(3)
            ]
            assert codes == [status, status, 200]

    async def test_429_carries_retry_after(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            await add_fault(sim, kind="status", status=429, retry_after=7)
            response = await sim.get("/trader/v1/accounts")
            assert response.status_code == 429
            assert response.headers["Retry-After"] == "7"
            assert response.headers["Schwab-Client-CorrelId"]
            await add_fault(sim, kind="status", status=429)
            assert (await sim.get("/trader/v1/accounts")).headers["Retry-After"] == "1"

    async def test_empty_and_html_bodies(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            await add_fault(sim, kind="status", status=401, body="empty")
            await add_fault(sim, kind="status", status=403, body="html")
            empty = await sim.get("/trader/v1/accounts")
            html = await sim.get("/trader/v1/accounts")
            assert empty.status_code == 401 and empty.content == b""
            assert html.status_code == 403 and "Access Denied" in html.text

    async def test_path_prefix_limits_the_fault_to_the_token_endpoint(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            tokens = await login_tokens(sim)
            await add_fault(sim, kind="status", status=503, path_prefix="/v1/oauth/token")
            assert (await sim.get("/trader/v1/accounts", headers=bearer(tokens))).status_code == 200
            refresh = await sim.post(
                "/v1/oauth/token",
                data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                headers=basic_auth(),
            )
            assert refresh.status_code == 503

    async def test_control_and_health_are_never_faulted(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            await add_fault(sim, kind="status", status=500, count=5)
            assert (await sim.get("/health/live")).status_code == 200
            assert (await sim.get("/control/clock")).status_code == 200
            assert len((await sim.get("/control/faults")).json()) == 1
            assert (await sim.delete("/control/faults")).json() == {"cleared": 1}
            assert (await sim.get("/trader/v1/accounts")).status_code == 401


class TestOtherFaults:
    async def test_latency_delays_then_serves_normally(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            headers = bearer(await login_tokens(sim))
            await add_fault(sim, kind="latency", latency_ms=300)
            started = time.perf_counter()
            response = await sim.get("/trader/v1/accounts", headers=headers)
            assert time.perf_counter() - started >= 0.3
            assert response.status_code == 200
            started = time.perf_counter()
            await sim.get("/trader/v1/accounts", headers=headers)
            assert time.perf_counter() - started < 0.3

    async def test_latency_needs_a_duration(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            response = await sim.post("/control/faults", json={"kind": "latency"})
            assert response.status_code == 422

    async def test_malformed_json_body(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            await add_fault(sim, kind="malformed")
            response = await sim.get("/trader/v1/accounts")
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            with pytest.raises(json.JSONDecodeError):
                response.json()

    async def test_dropped_connection_is_a_transport_error_in_process(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            await add_fault(sim, kind="drop")
            with pytest.raises(httpx.TransportError):
                await sim.get("/trader/v1/accounts")
            assert issubclass(SimulatedConnectionDrop, httpx.RemoteProtocolError)
            assert (await sim.get("/trader/v1/accounts")).status_code == 401


class TestStats:
    async def test_counts_requests_per_route_and_token_calls_per_grant(
        self, tmp_path: Path
    ) -> None:
        async with simulator_client(tmp_path) as sim:
            tokens = await login_tokens(sim)

            async def do_refresh() -> int:
                response = await sim.post(
                    "/v1/oauth/token",
                    data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                    headers=basic_auth(),
                )
                return response.status_code

            assert await asyncio.gather(*(do_refresh() for _ in range(20))) == [200] * 20
            await sim.get("/trader/v1/accounts", headers=bearer(tokens))
            stats = (await sim.get("/control/stats")).json()
            assert stats["token_grants"] == {"authorization_code": 1, "refresh_token": 20}
            assert stats["requests"]["POST /v1/oauth/token"] == 21
            assert stats["requests"]["GET /trader/v1/accounts"] == 1
            assert stats["requests"]["POST /v1/oauth/authorize"] == 1


class TestClockAndReset:
    async def test_clock_reads_advances_and_resets(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            clock = (await sim.get("/control/clock")).json()
            assert clock["now"] == clock["start"] == "2025-06-16T12:00:00Z"
            moved = (await sim.post("/control/clock", json={"advance_seconds": 90})).json()
            assert moved["now"] == "2025-06-16T12:01:30Z" and moved["offset_seconds"] == 90
            assert (
                await sim.post("/control/clock", json={"advance_seconds": -5})
            ).status_code == 422
            tokens = await login_tokens(sim)
            await sim.put("/control/refresh-mode", json={"mode": "omit"})
            await add_fault(sim, kind="status", count=3)
            reset = (await sim.post("/control/reset")).json()
            assert reset["now"] == "2025-06-16T12:00:00Z"
            assert (await sim.get("/control/faults")).json() == []
            assert (await sim.get("/control/options")).json()["refresh_mode"] == "same"
            assert (await sim.get("/control/stats")).json()["token_grants"] == {}
            denied = await sim.get("/trader/v1/accounts", headers=bearer(tokens))
            assert denied.status_code == 401
            assert sim_state(sim).clock.now() == START_TIME

    async def test_users_are_listed_with_their_hashes(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            users = {u["username"]: u for u in (await sim.get("/control/users")).json()}
            assert set(users) == {"demo", "whale", "empty"}
            assert len(users["demo"]["account_hashes"]) == 2
            assert users["empty"]["account_hashes"] == []


class TestControlToken:
    async def test_control_requires_the_token_when_configured(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path, simulator_control_token="s3cret-control") as sim:
            assert (await sim.get("/control/clock")).status_code == 401
            wrong = await sim.get("/control/clock", headers={"X-Control-Token": "nope"})
            assert wrong.status_code == 401
            ok = await sim.get("/control/clock", headers={"X-Control-Token": "s3cret-control"})
            assert ok.status_code == 200
            # The institution itself stays open.
            assert (await sim.get("/health/live")).status_code == 200


class TestDeterminism:
    async def test_two_simulators_serve_identical_data(self, tmp_path: Path) -> None:
        bodies = []
        for name in ("one", "two"):
            async with simulator_client(tmp_path / name) as sim:
                headers = bearer(await login_tokens(sim))
                numbers = (
                    await sim.get("/trader/v1/accounts/accountNumbers", headers=headers)
                ).json()
                account = numbers[0]["hashValue"]
                rows = await sim.get(
                    f"/trader/v1/accounts/{account}/transactions",
                    params={
                        "startDate": "2024-07-01T00:00:00Z",
                        "endDate": "2025-06-16T12:00:00Z",
                        "types": "TRADE,ACH_RECEIPT",
                    },
                    headers=headers,
                )
                positions = await sim.get(
                    "/trader/v1/accounts", params={"fields": "positions"}, headers=headers
                )
                bodies.append((numbers, rows.content, positions.content))
        assert bodies[0] == bodies[1]
        assert len(json.loads(bodies[0][1])) > 50


class TestGeneratedCredentials:
    async def test_missing_credentials_are_generated_and_saved_privately(
        self, tmp_path: Path
    ) -> None:
        async with simulator_client(
            tmp_path, simulator_client_id=None, simulator_client_secret=None
        ) as sim:
            state = sim_state(sim)
            saved = json.loads((tmp_path / "var" / "simulator-credentials.json").read_text())
            assert saved == {"client_id": state.client_id, "client_secret": state.client_secret}
            assert len(state.client_id) == 32 and len(state.client_secret) == 64
            mode = (tmp_path / "var" / "simulator-credentials.json").stat().st_mode & 0o777
            assert mode == 0o600
