"""`python -m bench`: pick scenarios, run each against its reference, print and save results.

Exit status: 0 when every scenario was measured (missed targets included: a benchmark is a
measurement, not a gate); 1 when the harness or a scenario's run failed, or a measurement is
invalid (too many failed requests); 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bench import backends
from bench.report import (
    format_header,
    format_repeat_summary,
    format_result,
    format_summary,
    write_json,
)
from bench.results import RepeatedResult, ScenarioResult
from bench.runner import RunConfig, run_scenario
from bench.scenarios import UnknownScenarioError, discover, select
from bench.tools import REPO_ROOT, ToolError, ensure_wrk, machine_facts

RESULTS_DIR = REPO_ROOT / "bench" / "results"


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure Dashtam against reference implementations in the same run.",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        dest="scenarios",
        metavar="NAME",
        help="scenario to run (repeatable; default: all)",
    )
    parser.add_argument("--duration", type=_positive_int, default=10, help="seconds measured")
    parser.add_argument(
        "--warmup", type=_non_negative_int, default=3, help="seconds of warm-up before measuring"
    )
    parser.add_argument("--connections", type=_positive_int, default=50, help="wrk connections")
    parser.add_argument("--threads", type=_positive_int, default=2, help="wrk threads")
    parser.add_argument("--backend", choices=backends.BACKENDS, default="embedded")
    parser.add_argument(
        "--environment",
        choices=("development", "test", "production"),
        default="development",
        help="ENVIRONMENT of the Dashtam process",
    )
    parser.add_argument(
        "--repeat",
        type=_positive_int,
        default=1,
        metavar="N",
        help="measure each scenario N times and judge the median ratios",
    )
    parser.add_argument("--list", action="store_true", help="list scenarios and exit")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def format_listing(registry: dict[str, object]) -> str:
    """`--list` output: name, kind and description of each scenario."""
    from bench.scenarios.base import Scenario

    scenarios = [s for s in registry.values() if isinstance(s, Scenario)]
    width = max([len(s.name) for s in scenarios] + [4])
    kind_width = max([len(s.kind) for s in scenarios] + [4])
    return "\n".join(
        f"{s.name.ljust(width)}  {s.kind.ljust(kind_width)}  {s.description}" for s in scenarios
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    registry = discover()
    if args.list:
        print(format_listing(dict(registry)))
        return 0
    try:
        scenarios = select(registry, args.scenarios)
    except UnknownScenarioError as exc:
        parser.error(str(exc))
    try:
        if any(s.subject.kind == "http" or _has_http_reference(s) for s in scenarios):
            ensure_wrk()
        from dashtam.core.config import generate_encryption_key, generate_secret_key
        from dashtam.core.tls import ensure_certificates

        certs_dir = REPO_ROOT / "certs"
        ensure_certificates(certs_dir)
    except (ToolError, OSError) as exc:
        print(f"error: {exc}")
        return 1

    stamp = time.strftime("%Y%m%d-%H%M%S")
    config = RunConfig(
        duration_s=args.duration,
        warmup_s=args.warmup,
        connections=args.connections,
        threads=args.threads,
        backend=args.backend,
        environment=args.environment,
        results_dir=RESULTS_DIR / stamp,
        certs_dir=certs_dir,
        # Fresh per run: measurements never depend on (or touch) the developer's var/ secrets.
        secrets={
            "SECRET_KEY": generate_secret_key(),
            "ENCRYPTION_KEYS": generate_encryption_key("bench"),
        },
    )
    facts = machine_facts(args.backend)
    print(format_header(facts))
    print(f"  run files (logs, Lua scripts, stores): {config.results_dir}\n", flush=True)

    results: list[ScenarioResult] = []
    repeats: list[RepeatedResult] = []
    for scenario in scenarios:
        runs: list[ScenarioResult] = []
        for index in range(args.repeat):
            run_config = repeat_config(config, index, args.repeat)
            result = run_scenario(scenario, run_config)
            runs.append(result)
            print(f"[{scenario.name}] done: {result.verdict}", flush=True)
        results.extend(runs)
        repeats.append(RepeatedResult(runs))

    print("\n" + format_header(facts) + "\n")
    for result in results:
        print(format_result(result) + "\n")
    print(format_summary(results))
    if args.repeat > 1:
        print("\n" + format_repeat_summary(repeats))
    run_settings = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "threads": args.threads,
        "repeat": args.repeat,
        "environment": args.environment,
        "started": stamp,
    }
    json_path = args.json or config.results_dir / "results.json"
    write_json(json_path, results, facts, run_settings, repeats if args.repeat > 1 else ())
    print(f"\nresults written to {json_path}")
    failed = [r.name for r in results if r.verdict in ("ERROR", "INVALID")]
    if failed:
        print(f"not measured properly: {', '.join(failed)} (see logs in {config.results_dir})")
        return 1
    return 0


def repeat_config(config: RunConfig, index: int, repeat: int) -> RunConfig:
    """The settings of run `index` (0-based) of `repeat`: each repeated run files apart."""
    if repeat == 1:
        return config
    return replace(config, results_dir=config.results_dir / f"run-{index + 1}")


def _has_http_reference(scenario: object) -> bool:
    reference = getattr(scenario, "reference", None)
    return reference is not None and reference.kind == "http"
