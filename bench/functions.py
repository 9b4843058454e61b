"""Measure a Python callable's throughput in N processes at once (default: one per core).

Run as `python -m bench.functions --factory module:function --processes N --duration S`; it
prints one JSON line. The harness starts it as a subprocess so nothing else shares its
interpreter. Each worker builds its callable, waits for the others at a barrier, warms up,
then calls it in timed batches until the duration is over.

Batches are sized to last >= ~200 µs so the clock costs nothing measurable; latency
percentiles are therefore of per-call averages within a batch (exact for slow functions
such as argon2, smoothed for sub-microsecond ones).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import multiprocessing
import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: A timed batch should last at least this long.
_MIN_BATCH_S = 200e-6
_MAX_BATCH = 1_000_000
#: Spawning workers and importing their modules must finish within this.
_BARRIER_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class FunctionResult:
    """Throughput of one callable across all worker processes.

    Attributes:
        calls: Calls completed in the measured window, all processes together.
        duration_s: Longest measured window among the workers.
        calls_per_sec: Sum of each worker's calls / its own window.
        processes: Worker processes.
        latency_ms: `p50`, `p90`, `p99`, `mean` of per-call time in milliseconds.
    """

    calls: int
    duration_s: float
    calls_per_sec: float
    processes: int
    latency_ms: dict[str, float]


def load_factory(path: str) -> Callable[[], Callable[[], Any]]:
    """Import `module:function`."""
    module_name, _, attribute = path.partition(":")
    factory = getattr(importlib.import_module(module_name), attribute)
    if not callable(factory):
        raise TypeError(f"{path} is not callable")
    return factory  # type: ignore[no-any-return]


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (`pct` in 0..100)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = math.ceil(pct / 100.0 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def batch_size(seconds_per_call: float) -> int:
    """Calls per timed batch so one batch lasts at least `_MIN_BATCH_S`."""
    if seconds_per_call <= 0:
        return _MAX_BATCH
    # The epsilon keeps float noise (200e-6 / 1e-6 = 200.00000000000003) from adding a call.
    return max(1, min(_MAX_BATCH, math.ceil(_MIN_BATCH_S / seconds_per_call - 1e-9)))


def _worker(
    factory_path: str,
    warmup_s: float,
    duration_s: float,
    barrier: Any,
    results: Any,
) -> None:
    try:
        function = load_factory(factory_path)()
        barrier.wait(timeout=_BARRIER_TIMEOUT_S)
        # Warm up (at least one call) and learn the per-call time to size batches.
        started = time.perf_counter()
        warm_calls = 0
        while True:
            function()
            warm_calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= warmup_s:
                break
        batch = batch_size(elapsed / warm_calls)
        samples: list[float] = []
        calls = 0
        start = time.perf_counter()
        deadline = start + duration_s
        now = start
        while now < deadline:
            t0 = time.perf_counter()
            for _ in range(batch):
                function()
            now = time.perf_counter()
            samples.append((now - t0) / batch)
            calls += batch
        results.put({"calls": calls, "elapsed": now - start, "samples": samples})
    except BaseException as exc:  # report any failure to the parent instead of hanging it
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        barrier.abort()


def aggregate(worker_results: Sequence[dict[str, Any]]) -> FunctionResult:
    """Combine the workers' counts and samples into one result."""
    samples = sorted(s for result in worker_results for s in result["samples"])
    return FunctionResult(
        calls=sum(r["calls"] for r in worker_results),
        duration_s=max(r["elapsed"] for r in worker_results),
        calls_per_sec=sum(r["calls"] / r["elapsed"] for r in worker_results),
        processes=len(worker_results),
        latency_ms={
            "p50": percentile(samples, 50) * 1000,
            "p90": percentile(samples, 90) * 1000,
            "p99": percentile(samples, 99) * 1000,
            "mean": sum(samples) / len(samples) * 1000,
        },
    )


def measure(factory: str, *, processes: int, duration_s: float, warmup_s: float) -> FunctionResult:
    """Run `factory`'s callable in `processes` processes at the same time.

    Raises:
        RuntimeError: When a worker fails or does not report in time.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=_worker, args=(factory, warmup_s, duration_s, barrier, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    collected: list[dict[str, Any]] = []
    try:
        for _ in workers:
            collected.append(results.get(timeout=_BARRIER_TIMEOUT_S + warmup_s + duration_s + 30))
    except queue.Empty as exc:
        raise RuntimeError(f"{factory}: a worker died without reporting") from exc
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    errors = [r["error"] for r in collected if "error" in r]
    if errors:
        raise RuntimeError(f"{factory} failed in a worker: {errors[0]}")
    return aggregate(collected)


def main(argv: list[str] | None = None) -> None:
    """Command line: measure one factory and print its result as one JSON line."""
    parser = argparse.ArgumentParser(description="Measure a callable's throughput.")
    parser.add_argument("--factory", required=True, help="module:function returning a callable")
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args(argv)
    result = measure(
        args.factory, processes=args.processes, duration_s=args.duration, warmup_s=args.warmup
    )
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
