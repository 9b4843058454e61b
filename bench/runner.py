"""Run one scenario: prepare stores, start each server in turn, set up, warm up, measure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import backends
from bench.results import Measurement, ScenarioResult
from bench.scenarios.base import (
    DashtamHttp,
    FunctionRef,
    HttpLoad,
    LoadSpec,
    ReferenceHttp,
    Scenario,
    SetupContext,
)
from bench.servers import dashtam_command, free_port, reference_command, running_server
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
                "LOG_LEVEL": "WARNING",
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
    state: dict[str, Any] = {}
    store_env: dict[str, str] = {}
    result.busy_before = other_runnable()
    try:
        subject = scenario.subject
        if isinstance(subject, DashtamHttp):
            _progress(scenario, f"preparing {config.backend} stores")
            store_env = backends.prepare(config.backend, workdir)
            result.dashtam = _measure_http(
                scenario,
                config,
                label="dashtam",
                command=dashtam_command,
                load=subject.load,
                env=config.server_env(store_env, dict(subject.env)),
                ready_path="/health/live",
                workdir=workdir,
                state=state,
            )
        else:
            result.dashtam = _measure_function(scenario, config, "dashtam", subject)
        reference = scenario.reference
        if isinstance(reference, ReferenceHttp):
            app = reference.app
            result.reference = _measure_http(
                scenario,
                config,
                label="reference",
                command=lambda port: reference_command(app, port),
                load=reference.load,
                env=config.server_env(store_env, dict(reference.env)),
                ready_path=reference.ready_path,
                workdir=workdir,
                state=state,
            )
        elif isinstance(reference, FunctionRef):
            result.reference = _measure_function(scenario, config, "reference", reference)
    except Exception as exc:  # one broken scenario must not stop the others
        result.error = f"{type(exc).__name__}: {exc}"
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "error.log").write_text(traceback.format_exc())
    return result.decide()


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
        common = {
            "connections": connections,
            "threads": config.threads,
            "timeout_s": scenario.timeout_s,
            "comment": f"{scenario.name} ({label})",
        }
        if config.warmup_s > 0:
            _progress(scenario, f"warming up {label} for {config.warmup_s}s")
            run_wrk(
                resolved,
                server.base_url,
                script_path=workdir / f"{label}.lua",
                duration_s=config.warmup_s,
                **common,
            )
        _progress(scenario, f"measuring {label} for {config.duration_s}s")
        measured = run_wrk(
            resolved,
            server.base_url,
            script_path=workdir / f"{label}.lua",
            duration_s=config.duration_s,
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
