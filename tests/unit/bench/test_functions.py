"""The function-throughput runner's pure parts: percentiles, batch sizing, aggregation."""

from __future__ import annotations

import pytest
from bench.functions import aggregate, batch_size, load_factory, percentile
from bench.reference import functions


class TestPercentile:
    def test_nearest_rank(self) -> None:
        values = [float(v) for v in range(1, 101)]
        assert percentile(values, 50) == 50
        assert percentile(values, 90) == 90
        assert percentile(values, 99) == 99
        assert percentile(values, 100) == 100
        assert percentile(values, 0) == 1

    def test_single_value_and_empty(self) -> None:
        assert percentile([7.0], 99) == 7.0
        with pytest.raises(ValueError, match="no values"):
            percentile([], 50)


class TestBatchSize:
    def test_slow_functions_are_timed_one_call_at_a_time(self) -> None:
        assert batch_size(0.1) == 1  # argon2: ~100 ms a call

    def test_fast_functions_are_batched_to_about_200_microseconds(self) -> None:
        assert batch_size(1e-6) == 200
        assert batch_size(21e-6) == 10  # a JWT decode

    def test_batches_are_capped(self) -> None:
        assert batch_size(0.0) == 1_000_000
        assert batch_size(1e-12) == 1_000_000


class TestAggregate:
    def test_rates_add_up_across_processes_and_samples_merge(self) -> None:
        result = aggregate(
            [
                {"calls": 60, "elapsed": 10.0, "samples": [0.1] * 60},
                {"calls": 66, "elapsed": 11.0, "samples": [0.2] * 60 + [1.0] * 6},
            ]
        )
        assert result.calls == 126
        assert result.processes == 2
        assert result.duration_s == 11.0
        assert result.calls_per_sec == pytest.approx(6.0 + 6.0)
        assert result.latency_ms["p50"] == pytest.approx(200.0)
        assert result.latency_ms["p99"] == pytest.approx(1000.0)


class TestFactories:
    def test_load_factory_imports_module_and_function(self) -> None:
        assert load_factory("bench.reference.functions:argon2_verify") is functions.argon2_verify

    def test_load_factory_refuses_non_callables(self) -> None:
        with pytest.raises(TypeError, match="not callable"):
            load_factory("bench.reference.functions:BENCH_PASSWORD")

    def test_argon2_reference_verifies_its_password(self) -> None:
        verify = functions.argon2_verify()
        assert verify() is True
