"""Text tables for the terminal and the JSON results file."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.results import Measurement, RepeatedResult, ScenarioResult

_HEADER = ("side", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "driven by")
_WIDTHS = (10, 12, 9, 9, 9, 8)


def _row(cells: Sequence[str]) -> str:
    # Left-align the label and the free-text last column; right-align the numbers.
    head = cells[0].ljust(_WIDTHS[0])
    numbers = "".join(c.rjust(w) for c, w in zip(cells[1:-1], _WIDTHS[1:], strict=True))
    return f"  {head}{numbers}  {cells[-1]}".rstrip()


def format_rate(value: float) -> str:
    """Throughput with thousands separators; one decimal keeps slow rates (argon2) readable."""
    return f"{value:,.1f}"


def format_ms(value: float | None) -> str:
    """A latency in milliseconds, `-` when unknown."""
    if value is None:
        return "-"
    return f"{value:,.2f}" if value < 1000 else f"{value:,.0f}"


def format_ratio(value: float | None) -> str:
    """A ratio with two decimals, `-` when unknown."""
    return "-" if value is None else f"{value:.2f}"


def _measurement_row(m: Measurement) -> str:
    return _row(
        (
            m.label,
            format_rate(m.rate),
            format_ms(m.p50_ms),
            format_ms(m.p90_ms),
            format_ms(m.p99_ms),
            str(m.error_count),
            m.setup,
        )
    )


def format_header(facts: Mapping[str, Any]) -> str:
    """Machine facts and the shared-cores caveat, printed once above the tables."""
    return "\n".join(
        [
            f"Dashtam benchmarks: {facts['cores']} cores ({facts['cpu']}), "
            f"Python {facts['python']}, backend {facts['backend']}",
            f"  {facts['server']}; {facts['wrk']}; commit {facts['commit']}",
            f"  note: the server under test, the reference and wrk share these {facts['cores']} "
            "cores; the servers run one after the other, never together.",
        ]
    )


def format_result(result: ScenarioResult) -> str:
    """One scenario's table: both sides, their ratios, the target and the verdict."""
    lines = [f"{result.name}  [{result.kind}]  {result.description}"]
    if result.dashtam is not None:
        lines.append(_row(_HEADER))
        lines.append(_measurement_row(result.dashtam))
        if result.reference is not None:
            lines.append(_measurement_row(result.reference))
            lines.append(
                _row(
                    (
                        "ratio",
                        format_ratio(result.rate_ratio),
                        format_ratio(result.p50_ratio),
                        "",
                        format_ratio(result.p99_ratio),
                        "",
                        "dashtam / reference",
                    )
                )
            )
    target = result.target.describe() if result.target else "none (report only)"
    verdict: str = result.verdict
    if result.reasons:
        verdict += ": " + "; ".join(result.reasons)
    lines.append(f"  target: {target}  ->  {verdict}")
    if result.notes:
        lines.append(f"  notes: {result.notes}")
    if result.machine_was_busy:
        lines.append(
            f"  warning: {result.busy_before:.1f} other tasks were running before this scenario; "
            "the numbers are noisy (run again on an idle machine)"
        )
    return "\n".join(lines)


def format_summary(results: Sequence[ScenarioResult]) -> str:
    """One line per scenario: verdict and ratios."""
    width = max([len(r.name) for r in results] + [8])
    lines = [f"{'scenario'.ljust(width)}  verdict  req/s ratio  p99 ratio"]
    for r in results:
        lines.append(
            f"{r.name.ljust(width)}  {r.verdict.ljust(7)}  "
            f"{format_ratio(r.rate_ratio).rjust(11)}  {format_ratio(r.p99_ratio).rjust(9)}"
        )
    return "\n".join(lines)


def format_repeat_summary(repeats: Sequence[RepeatedResult]) -> str:
    """One line per repeated scenario: verdict on the medians, then every run's ratio."""
    width = max([len(r.name) for r in repeats] + [8])
    lines = [f"{'scenario'.ljust(width)}  verdict  median req/s  median p99  req/s ratio by run"]
    for repeat in repeats:
        verdict, reasons = repeat.verdict()
        by_run = ", ".join(format_ratio(r) for r in repeat.rate_ratios) or "-"
        line = (
            f"{repeat.name.ljust(width)}  {verdict.ljust(7)}  "
            f"{format_ratio(repeat.median_rate_ratio).rjust(12)}  "
            f"{format_ratio(repeat.median_p99_ratio).rjust(10)}  {by_run}"
        )
        if reasons:
            line += f"  ({'; '.join(reasons)})"
        lines.append(line)
    return "\n".join(lines)


def write_json(
    path: Path,
    results: Sequence[ScenarioResult],
    facts: Mapping[str, Any],
    settings: Mapping[str, Any],
    repeats: Sequence[RepeatedResult] = (),
) -> None:
    """Write machine facts, run settings, every result (and repeat summaries) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "machine": dict(facts),
        "settings": dict(settings),
        "results": [r.to_dict() for r in results],
    }
    if repeats:
        document["repeats"] = [r.to_dict() for r in repeats]
    path.write_text(json.dumps(document, indent=2) + "\n")
