"""Measurements, ratios and verdicts (pure data and logic, no I/O)."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bench.scenarios.base import Target

#: More failed requests than this share makes a measurement meaningless (wrong setup, limits).
MAX_ERROR_RATE = 0.01

Verdict = Literal["PASS", "MISS", "REPORT", "INVALID", "ERROR"]


@dataclass(frozen=True)
class Measurement:
    """Throughput and latency of one side of a scenario.

    Attributes:
        label: `dashtam` or `reference`.
        method: `wrk` (HTTP under load), `function` (calls in N processes) or `flow`
            (a Python-driven journey, iterations one after another).
        rate: Requests (or calls) per second.
        count: Requests (or calls) completed in the measured window.
        duration_s: Measured window.
        p50_ms: Median latency (per-call time for functions).
        p90_ms: 90th percentile.
        p99_ms: 99th percentile.
        errors: Failure counts by kind (wrk: connect, read, write, status, timeout).
        setup: How it was driven, e.g. `50 conns / 2 threads` or `2 processes`.
    """

    label: str
    method: Literal["wrk", "function", "flow"]
    rate: float
    count: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: dict[str, int] = field(default_factory=dict)
    setup: str = ""

    @property
    def error_count(self) -> int:
        """All failures together."""
        return sum(self.errors.values())

    @property
    def error_rate(self) -> float:
        """Failures per completed request (socket errors can exceed requests: capped at 1)."""
        if self.count <= 0:
            return 1.0 if self.error_count else 0.0
        return min(1.0, self.error_count / self.count)

    @property
    def valid(self) -> bool:
        """Whether the numbers mean something: requests done, few failures."""
        return self.count > 0 and self.error_rate <= MAX_ERROR_RATE


#: Above this many other runnable tasks before a scenario, its numbers are flagged as noisy.
BUSY_THRESHOLD = 0.5


@dataclass
class ScenarioResult:
    """Everything reported for one scenario."""

    name: str
    description: str
    kind: str
    target: Target | None
    notes: str = ""
    dashtam: Measurement | None = None
    reference: Measurement | None = None
    error: str | None = None
    #: Other tasks wanting a CPU just before the scenario started (see `tools.other_runnable`).
    busy_before: float | None = None
    verdict: Verdict = "ERROR"
    reasons: list[str] = field(default_factory=list)

    @property
    def rate_ratio(self) -> float | None:
        """Dashtam's throughput / the reference's (higher is better)."""
        if self.dashtam is None or self.reference is None or self.reference.rate <= 0:
            return None
        return self.dashtam.rate / self.reference.rate

    @property
    def p99_ratio(self) -> float | None:
        """Dashtam's p99 / the reference's (lower is better); only for same-kind sides."""
        if self.dashtam is None or self.reference is None:
            return None
        if self.dashtam.method != self.reference.method or self.reference.p99_ms <= 0:
            return None
        return self.dashtam.p99_ms / self.reference.p99_ms

    @property
    def p50_ratio(self) -> float | None:
        """Dashtam's p50 / the reference's (lower is better); only for same-kind sides."""
        if self.dashtam is None or self.reference is None:
            return None
        if self.dashtam.method != self.reference.method or self.reference.p50_ms <= 0:
            return None
        return self.dashtam.p50_ms / self.reference.p50_ms

    @property
    def machine_was_busy(self) -> bool:
        """Whether other processes competed for the cores when the scenario started."""
        return self.busy_before is not None and self.busy_before >= BUSY_THRESHOLD

    def decide(self) -> ScenarioResult:
        """Set `verdict` and `reasons` from the measurements and the target; returns self."""
        self.verdict, self.reasons = evaluate(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, ratios included."""
        data = asdict(self)
        data["target"] = asdict(self.target) if self.target else None
        data["rate_ratio"] = self.rate_ratio
        data["p99_ratio"] = self.p99_ratio
        data["p50_ratio"] = self.p50_ratio
        return data


def evaluate(result: ScenarioResult) -> tuple[Verdict, list[str]]:
    """Judge a result against its target.

    Returns:
        The verdict and why: `ERROR` (the run failed), `INVALID` (too many failed requests),
        `REPORT` (no target), else `PASS` or `MISS`.
    """
    if result.error is not None or result.dashtam is None:
        return "ERROR", [result.error or "no measurement"]
    sides = [m for m in (result.dashtam, result.reference) if m is not None]
    invalid = [
        f"{m.label}: {m.error_count} errors in {m.count} requests ({_errors(m)})"
        for m in sides
        if not m.valid
    ]
    if invalid:
        return "INVALID", invalid
    if result.target is None:
        return "REPORT", []
    reasons = missed_thresholds(
        result.target, result.rate_ratio, result.p99_ratio, result.p50_ratio
    )
    return ("MISS" if reasons else "PASS"), reasons


def missed_thresholds(
    target: Target, rate_ratio: float | None, p99_ratio: float | None, p50_ratio: float | None
) -> list[str]:
    """The target's thresholds these ratios miss, each with why (empty: all met)."""
    reasons: list[str] = []
    if target.min_rps_ratio is not None:
        if rate_ratio is None:
            reasons.append("req/s ratio unavailable")
        elif rate_ratio < target.min_rps_ratio:
            reasons.append(f"req/s ratio {rate_ratio:.2f} < {target.min_rps_ratio:.2f}")
    if target.max_p99_ratio is not None:
        if p99_ratio is None:
            reasons.append("p99 ratio unavailable")
        elif p99_ratio > target.max_p99_ratio:
            reasons.append(f"p99 ratio {p99_ratio:.2f} > {target.max_p99_ratio:.2f}")
    if target.max_p50_ratio is not None:
        if p50_ratio is None:
            reasons.append("p50 ratio unavailable")
        elif p50_ratio > target.max_p50_ratio:
            reasons.append(f"p50 ratio {p50_ratio:.2f} > {target.max_p50_ratio:.2f}")
    return reasons


@dataclass
class RepeatedResult:
    """One scenario measured several times (`--repeat`), judged on the median ratios.

    On a machine whose speed drifts, one run's ratio can land on either side of a target; the
    median of a few runs, each measuring both sides back to back, is the steadier figure.
    """

    runs: list[ScenarioResult]

    @property
    def name(self) -> str:
        """The scenario's name."""
        return self.runs[0].name

    @property
    def rate_ratios(self) -> list[float]:
        """The runs' req/s ratios (runs without one left out)."""
        return [r for r in (run.rate_ratio for run in self.runs) if r is not None]

    @property
    def p99_ratios(self) -> list[float]:
        """The runs' p99 ratios (runs without one left out)."""
        return [r for r in (run.p99_ratio for run in self.runs) if r is not None]

    @property
    def p50_ratios(self) -> list[float]:
        """The runs' p50 ratios (runs without one left out)."""
        return [r for r in (run.p50_ratio for run in self.runs) if r is not None]

    @property
    def median_rate_ratio(self) -> float | None:
        """The median req/s ratio, None when no run has one."""
        return _median(self.rate_ratios)

    @property
    def median_p99_ratio(self) -> float | None:
        """The median p99 ratio, None when no run has one."""
        return _median(self.p99_ratios)

    @property
    def median_p50_ratio(self) -> float | None:
        """The median p50 ratio, None when no run has one."""
        return _median(self.p50_ratios)

    def verdict(self) -> tuple[Verdict, list[str]]:
        """`ERROR`/`INVALID` when any run was; else the target judged on the medians."""
        for bad in ("ERROR", "INVALID"):
            failed = [run for run in self.runs if run.verdict == bad]
            if failed:
                return bad, [f"{len(failed)} of {len(self.runs)} runs {bad}"]
        target = self.runs[0].target
        if target is None:
            return "REPORT", []
        reasons = missed_thresholds(
            target, self.median_rate_ratio, self.median_p99_ratio, self.median_p50_ratio
        )
        return ("MISS" if reasons else "PASS"), reasons

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: every run's ratios, their medians and the verdict."""
        verdict, reasons = self.verdict()
        return {
            "name": self.name,
            "runs": len(self.runs),
            "rate_ratios": self.rate_ratios,
            "p99_ratios": self.p99_ratios,
            "p50_ratios": self.p50_ratios,
            "median_rate_ratio": self.median_rate_ratio,
            "median_p99_ratio": self.median_p99_ratio,
            "median_p50_ratio": self.median_p50_ratio,
            "verdict": verdict,
            "reasons": reasons,
        }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _errors(measurement: Measurement) -> str:
    return ", ".join(f"{k} {v}" for k, v in measurement.errors.items() if v) or "none"
