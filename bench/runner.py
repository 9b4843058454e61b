"""Run one scenario: prepare stores, start each server in turn, set up, warm up, measure."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from bench import backends
from bench.results import Measurement, ScenarioResult
from bench.scenarios.base import (
    DashtamHttp,
    FlowContext,
    FunctionRef,
    HttpLoad,
    LoadSpec,
    PythonFlow,
    ReferenceHttp,
    Scenario,
    SetupContext,
)
from bench.servers import (
    ServerProcess,
    dashtam_command,
    free_port,
    reference_command,
    running_server,
)
from bench.tools import REPO_ROOT, other_runnable
from bench.wrk import run_wrk

#: At most this many distinct requests are probed before a run (each may cost an argon2 hash).
_MAX_PROBES = 10


class ProbeError(RuntimeError):
    """A request of the load does not get the expected status before the run."""


@dataclass(frozen=True)
class RunConfig:
    """Settings shared by every scenario of one `python -m bench` run."""

    duration_s: int
    warmup_s: int
    connections: int
    threads: int
    backend: str
    environment: str
    results_dir: Path
    certs_dir: Path
    secrets: dict[str, str]

    def server_env(self, store_env: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
        """Environment for a server process: clean, quiet, fresh secrets, the given stores."""
        return (
            backends.clean_environment(os.environ)
            | self.secrets
            | store_env
            | {
                "ENVIRONMENT": self.environment,
                # BENCH_SERVER_LOG_LEVEL=INFO keeps the access log (per-hop server timings).
                "LOG_LEVEL": os.environ.get("BENCH_SERVER_LOG_LEVEL", "WARNING"),
                "DOCS_ENABLED": "false",
                # The harness migrated already; start-up must not race or repeat it.
                "AUTO_MIGRATE": "false",
                "CERTS_DIR": str(self.certs_dir.resolve()),
            }
            | extra
        )


def run_scenario(scenario: Scenario, config: RunConfig) -> ScenarioResult:
    """Measure one scenario; failures become an `ERROR` result instead of an exception."""
    result = ScenarioResult(
        name=scenario.name,
        description=scenario.description,
        kind=scenario.kind,
        target=scenario.target,
        notes=scenario.notes,
    )
    workdir = config.results_dir / scenario.name
    config = scenario_config(scenario, config)
    state: dict[str, Any] = {}
    result.busy_before = other_runnable()
    try:
        # Processes a flow starts live until both sides are measured, then stop together.
        with ExitStack() as processes:
            result.dashtam = _measure_side(
                scenario, config, "dashtam", scenario.subject, workdir, state, processes
            )
            if scenario.reference is not None:
                result.reference = _measure_side(
                    scenario, config, "reference", scenario.reference, workdir, state, processes
                )
    except Exception as exc:  # one broken scenario must not stop the others
        result.error = f"{type(exc).__name__}: {exc}"
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "error.log").write_text(traceback.format_exc())
    return result.decide()


def scenario_config(scenario: Scenario, config: RunConfig) -> RunConfig:
    """The run's settings for one scenario: its minimum measuring window applied."""
    if scenario.min_duration_s <= config.duration_s:
        return config
    return replace(config, duration_s=scenario.min_duration_s)


def _measure_side(
    scenario: Scenario,
    config: RunConfig,
    label: str,
    side: DashtamHttp | ReferenceHttp | FunctionRef | PythonFlow,
    workdir: Path,
    state: dict[str, Any],
    processes: ExitStack,
) -> Measurement:
    if isinstance(side, FunctionRef):
        return _measure_function(scenario, config, label, side)
    if isinstance(side, ReferenceHttp):
        app = side.app
        return _measure_http(
            scenario,
            config,
            label=label,
            command=lambda port: reference_command(app, port),
            load=side.load,
            env=config.server_env(state.get("store_env", {}), dict(side.env)),
            ready_path=side.ready_path,
            workdir=workdir,
            state=state,
        )
    if isinstance(side, PythonFlow):
        # The second flow reuses the first one's stores: processes the first started (an API on
        # that database) are still running and may be what the second side measures.
        store_env = state.get("store_env")
        if store_env is None:
            store_env = _prepare_stores(scenario, config, label, workdir)
            state["store_env"] = store_env
        return _measure_flow(scenario, config, label, side, store_env, workdir, state, processes)
    # Dashtam as either side (e.g. the same endpoint over other data) gets fresh stores.
    store_env = _prepare_stores(scenario, config, label, workdir)
    state.setdefault("store_env", store_env)
    return _measure_http(
        scenario,
        config,
        label=label,
        command=dashtam_command,
        load=side.load,
        env=config.server_env(store_env, dict(side.env)),
        ready_path="/health/live",
        workdir=workdir,
        state=state,
    )


def _prepare_stores(
    scenario: Scenario, config: RunConfig, label: str, workdir: Path
) -> dict[str, str]:
    _progress(scenario, f"preparing {config.backend} stores for {label}")
    # The reference's embedded files go to their own directory; PostgreSQL is reset anyway.
    return backends.prepare(config.backend, workdir if label == "dashtam" else workdir / label)


def _progress(scenario: Scenario, message: str) -> None:
    print(f"[{scenario.name}] {message}", flush=True)


def _measure_http(
    scenario: Scenario,
    config: RunConfig,
    *,
    label: str,
    command: Callable[[int], list[str]],
    load: LoadSpec,
    env: dict[str, str],
    ready_path: str,
    workdir: Path,
    state: dict[str, Any],
) -> Measurement:
    port = free_port()
    ca_file = config.certs_dir / "ca.pem"
    connections = scenario.connections or config.connections
    _progress(scenario, f"starting {label} on port {port}")
    with running_server(
        label,
        command(port),
        port=port,
        env=env,
        ca_file=ca_file,
        log_dir=workdir,
        ready_path=ready_path,
    ) as server:
        context = SetupContext(
            base_url=server.base_url,
            ca_file=ca_file,
            env=env,
            backend=config.backend,
            workdir=workdir,
            state=state,
        )
        resolved = load if isinstance(load, HttpLoad) else load(context)
        if resolved.probe:
            probe(context, resolved)
        common: dict[str, Any] = {
            "connections": connections,
            "threads": config.threads,
            "timeout_s": scenario.timeout_s,
            "comment": f"{scenario.name} ({label})",
        }
        warmup_seeds, measure_seeds = chain_seeds(
            resolved, config.warmup_s > 0, connections, config.threads
        )
        if config.warmup_s > 0:
            _progress(scenario, f"warming up {label} for {config.warmup_s}s")
            run_wrk(
                resolved,
                server.base_url,
                script_path=workdir / f"{label}-warmup.lua",
                duration_s=config.warmup_s,
                seeds=warmup_seeds,
                **common,
            )
        _progress(scenario, f"measuring {label} for {config.duration_s}s")
        measured = run_wrk(
            resolved,
            server.base_url,
            script_path=workdir / f"{label}.lua",
            duration_s=config.duration_s,
            seeds=measure_seeds,
            **common,
        )
        # A server that crashed mid-run makes every number above meaningless.
        server.check_alive()
    return Measurement(
        label=label,
        method="wrk",
        rate=measured.requests_per_sec,
        count=measured.requests,
        duration_s=measured.duration_s,
        p50_ms=measured.latency_ms["p50"],
        p90_ms=measured.latency_ms["p90"],
        p99_ms=measured.latency_ms["p99"],
        errors=dict(measured.errors),
        setup=f"wrk {connections} conns / {min(config.threads, connections)} threads",
    )


def chain_seeds(
    load: HttpLoad, warmup: bool, connections: int, threads: int
) -> tuple[Sequence[str] | None, Sequence[str] | None]:
    """`(warm-up seeds, measurement seeds)` of a chained load; `(None, None)` otherwise.

    Each run needs a seed per connection plus one spare per thread: wrk calls `request()` once
    on its first thread only to check the script, and the token it takes is never sent.

    Raises:
        ValueError: When a run would get too few seeds (a connection would start with the
            `exhausted` token and fail).
    """
    if load.chain is None:
        return None, None
    warm, measure = load.chain.halves(warmup)
    needed = connections + min(threads, connections)
    for name, seeds in (("warm-up", warm if warmup else None), ("measurement", measure)):
        if seeds is not None and len(seeds) < needed:
            raise ValueError(
                f"token chain: the {name} has {len(seeds)} seed tokens; {connections} "
                f"connections on {min(threads, connections)} threads need at least {needed}"
            )
    return (warm if warmup else None), measure


def probe(context: SetupContext, load: HttpLoad) -> None:
    """Send each distinct request once and check its status, so a broken setup fails loudly.

    Raises:
        ProbeError: With the first unexpected answer.
    """
    unique = {
        (r.method, r.path, tuple(sorted(r.headers.items())), r.body): r for r in load.requests
    }
    distinct = list(unique.values())[:_MAX_PROBES]
    with context.client() as client:
        for request in distinct:
            try:
                response = client.request(
                    request.method,
                    request.path,
                    headers=dict(request.headers),
                    content=request.body.encode() if request.body is not None else None,
                )
            except httpx.HTTPError as exc:
                raise ProbeError(f"{request.method} {request.path}: {exc}") from exc
            if response.status_code != request.expect_status:
                raise ProbeError(
                    f"{request.method} {request.path} answered {response.status_code}, "
                    f"expected {request.expect_status}: {response.text[:300]}"
                )


def _measure_function(
    scenario: Scenario, config: RunConfig, label: str, function: FunctionRef
) -> Measurement:
    processes = function.process_count()
    _progress(
        scenario,
        f"measuring {label} function {function.factory} in {processes} processes "
        f"for {config.duration_s}s (+{config.warmup_s}s warm-up)",
    )
    command = [
        sys.executable,
        "-m",
        "bench.functions",
        f"--factory={function.factory}",
        f"--processes={processes}",
        f"--duration={config.duration_s}",
        f"--warmup={config.warmup_s}",
    ]
    done = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=backends.clean_environment(os.environ),
        capture_output=True,
        text=True,
        timeout=config.duration_s + config.warmup_s + 300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"function run failed: {(done.stderr or done.stdout)[-2000:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    latency = data["latency_ms"]
    return Measurement(
        label=label,
        method="function",
        rate=data["calls_per_sec"],
        count=data["calls"],
        duration_s=data["duration_s"],
        p50_ms=latency["p50"],
        p90_ms=latency["p90"],
        p99_ms=latency["p99"],
        setup=f"function, {data['processes']} processes (calls/s)",
    )


def _measure_flow(
    scenario: Scenario,
    config: RunConfig,
    label: str,
    flow: PythonFlow,
    store_env: dict[str, str],
    workdir: Path,
    state: dict[str, Any],
    processes: ExitStack,
) -> Measurement:
    ca_file = config.certs_dir / "ca.pem"
    base_env = config.server_env(store_env, {})

    def start(
        name: str, command: list[str], *, port: int, env: Mapping[str, str], ready_path: str
    ) -> ServerProcess:
        _progress(scenario, f"starting {name} on port {port}")
        return processes.enter_context(
            running_server(
                name,
                command,
                port=port,
                env=env,
                ca_file=ca_file,
                log_dir=workdir,
                ready_path=ready_path,
            )
        )

    async def drive() -> list[float]:
        async with AsyncExitStack() as cleanup:
            context = FlowContext(
                ca_file=ca_file,
                base_env=base_env,
                backend=config.backend,
                workdir=workdir,
                state=state,
                processes=processes,
                cleanup=cleanup,
                start_process=start,
            )
            step = await flow.setup(context)
            _progress(scenario, f"warming up {label}: {flow.warmup_iterations} iterations")
            for _ in range(flow.warmup_iterations):
                if step.before is not None:
                    await step.before()
                await step.run()
            _progress(scenario, f"measuring {label} for {config.duration_s}s")
            return await time_iterations(
                step.run,
                step.before,
                duration_s=config.duration_s,
                min_iterations=flow.min_iterations,
                max_iterations=flow.max_iterations,
            )

    times = asyncio.run(drive())
    return flow_measurement(label, times)


async def time_iterations(
    run: Callable[[], Any],
    before: Callable[[], Any] | None,
    *,
    duration_s: float,
    min_iterations: int,
    max_iterations: int,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Time `run` repeatedly (not `before`): until `duration_s` of timed work has passed and
    at least `min_iterations` ran, or `max_iterations` ran.

    Returns:
        Each iteration's time in seconds.
    """
    times: list[float] = []
    spent = 0.0
    while len(times) < max_iterations and (len(times) < min_iterations or spent < duration_s):
        if before is not None:
            await before()
        started = clock()
        await run()
        elapsed = clock() - started
        times.append(elapsed)
        spent += elapsed
    return times


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (`share` in 0..100) of non-empty `values`."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(share / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def flow_measurement(label: str, times: Sequence[float]) -> Measurement:
    """A flow side's measurement: iterations per second of timed work and their latencies."""
    total = sum(times)
    return Measurement(
        label=label,
        method="flow",
        rate=len(times) / total if total > 0 else 0.0,
        count=len(times),
        duration_s=total,
        p50_ms=percentile(times, 50) * 1000,
        p90_ms=percentile(times, 90) * 1000,
        p99_ms=percentile(times, 99) * 1000,
        setup=f"python, {len(times)} sequential iterations",
    )
