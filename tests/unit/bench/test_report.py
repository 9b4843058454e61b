"""Verdicts, ratios and the printed tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.report import (
    format_header,
    format_repeat_summary,
    format_result,
    format_summary,
    write_json,
)
from bench.results import Measurement, RepeatedResult, ScenarioResult
from bench.scenarios.base import Target


def measurement(label: str, rate: float, p99: float, **overrides: object) -> Measurement:
    values: dict[str, object] = {
        "label": label,
        "method": "wrk",
        "rate": rate,
        "count": int(rate * 10),
        "duration_s": 10.0,
        "p50_ms": p99 / 2,
        "p90_ms": p99 / 1.5,
        "p99_ms": p99,
        "errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0},
        "setup": "wrk 50 conns / 2 threads",
    }
    values.update(overrides)
    return Measurement(**values)  # type: ignore[arg-type]


def result(
    dashtam: Measurement | None,
    reference: Measurement | None,
    target: Target | None = None,
    **overrides: object,
) -> ScenarioResult:
    values: dict[str, object] = {
        "name": "health_live",
        "description": "GET /health/live vs bare",
        "kind": "http_vs_http",
        "target": target,
        "dashtam": dashtam,
        "reference": reference,
    }
    values.update(overrides)
    return ScenarioResult(**values).decide()  # type: ignore[arg-type]


class TestVerdict:
    def test_pass_when_every_threshold_holds(self) -> None:
        r = result(
            measurement("dashtam", 600, 8), measurement("reference", 1000, 4), Target(0.6, 2)
        )
        assert r.rate_ratio == pytest.approx(0.6)
        assert r.p99_ratio == pytest.approx(2.0)
        assert (r.verdict, r.reasons) == ("PASS", [])

    def test_miss_names_every_threshold_missed(self) -> None:
        r = result(
            measurement("dashtam", 500, 10), measurement("reference", 1000, 2), Target(0.6, 4)
        )
        assert r.verdict == "MISS"
        assert r.reasons == ["req/s ratio 0.50 < 0.60", "p99 ratio 5.00 > 4.00"]

    def test_p50_target(self) -> None:
        fast = result(
            measurement("dashtam", 900, 6),
            measurement("reference", 1000, 5),
            Target(max_p50_ratio=1.5),
        )
        assert fast.p50_ratio == pytest.approx(1.2)
        assert (fast.verdict, fast.reasons) == ("PASS", [])
        slow = result(
            measurement("dashtam", 500, 10),
            measurement("reference", 1000, 5),
            Target(max_p50_ratio=1.5),
        )
        assert (slow.verdict, slow.reasons) == ("MISS", ["p50 ratio 2.00 > 1.50"])

    def test_no_target_only_reports(self) -> None:
        r = result(measurement("dashtam", 3.6, 700, method="function"), None)
        assert (r.verdict, r.rate_ratio, r.p99_ratio) == ("REPORT", None, None)

    def test_too_many_failed_requests_make_the_measurement_invalid(self) -> None:
        failing = measurement("dashtam", 1000, 5, errors={"status": 101, "timeout": 0})
        r = result(failing, measurement("reference", 1000, 5), Target(0.1))
        assert r.verdict == "INVALID"
        assert r.reasons == ["dashtam: 101 errors in 10000 requests (status 101)"]

    def test_a_few_failures_are_tolerated(self) -> None:
        r = result(
            measurement("dashtam", 1000, 5, errors={"timeout": 100}),
            measurement("reference", 1000, 5),
            Target(0.5),
        )
        assert r.verdict == "PASS"

    def test_no_requests_at_all_is_invalid(self) -> None:
        r = result(measurement("dashtam", 0, 0, count=0), measurement("reference", 10, 1))
        assert r.verdict == "INVALID"

    def test_a_failed_run_is_an_error(self) -> None:
        r = result(None, None, Target(0.6), error="ServerError: dashtam exited with 2")
        assert (r.verdict, r.reasons) == ("ERROR", ["ServerError: dashtam exited with 2"])

    def test_p99_ratio_is_not_computed_between_http_and_function(self) -> None:
        r = result(
            measurement("dashtam", 10, 4000),
            measurement("reference", 12, 100, method="function"),
            Target(min_rps_ratio=0.6),
        )
        assert r.p99_ratio is None
        assert r.rate_ratio == pytest.approx(10 / 12)
        assert r.verdict == "PASS"


class TestTables:
    def test_result_table_shows_both_sides_ratio_target_and_verdict(self) -> None:
        text = format_result(
            result(
                measurement("dashtam", 5157.1, 19.62),
                measurement("reference", 6401.4, 27.45),
                Target(0.6, 4),
                notes="no store is used",
            )
        )
        lines = text.splitlines()
        assert lines[0] == "health_live  [http_vs_http]  GET /health/live vs bare"
        assert lines[1].split() == ["side", "req/s", "p50", "ms", "p90", "ms", "p99", "ms"] + [
            "errors",
            "driven",
            "by",
        ]
        assert lines[2].split()[:6] == ["dashtam", "5,157.1", "9.81", "13.08", "19.62", "0"]
        assert lines[3].split()[:6] == ["reference", "6,401.4", "13.72", "18.30", "27.45", "0"]
        assert lines[4].split()[:3] == ["ratio", "0.81", "0.71"]
        assert lines[5] == "  target: req/s ratio >= 0.60, p99 ratio <= 4.00  ->  PASS"
        assert lines[6] == "  notes: no store is used"
        # Columns line up: every number ends where its header ends.
        assert lines[1].index("p99 ms") + len("p99 ms") == lines[2].index("19.62") + len("19.62")

    def test_miss_and_error_reasons_are_printed(self) -> None:
        miss = result(
            measurement("dashtam", 100, 10), measurement("reference", 1000, 1), Target(0.6)
        )
        assert "->  MISS: req/s ratio 0.10 < 0.60" in format_result(miss)
        error = result(None, None, Target(0.6), error="WrkError: boom")
        text = format_result(error)
        assert "ERROR: WrkError: boom" in text
        assert "side" not in text

    def test_report_only_scenarios_say_so(self) -> None:
        text = format_result(result(measurement("dashtam", 3.6, 733.7, method="function"), None))
        assert "target: none (report only)  ->  REPORT" in text
        assert "ratio" not in text.split("target:")[0]

    def test_busy_machine_warning(self) -> None:
        busy = result(measurement("dashtam", 1, 1), None, busy_before=1.4)
        assert "warning: 1.4 other tasks" in format_result(busy)
        calm = result(measurement("dashtam", 1, 1), None, busy_before=0.2)
        assert "warning" not in format_result(calm)

    def test_large_latencies_drop_decimals(self) -> None:
        text = format_result(result(measurement("dashtam", 12.6, 4321.0), None))
        assert "4,321" in text and "12.6" in text

    def test_summary_lists_every_scenario(self) -> None:
        ok = result(measurement("dashtam", 600, 8), measurement("reference", 1000, 4), Target(0.6))
        error = result(None, None, name="auth_login", error="x")
        assert format_summary([ok, error]).splitlines() == [
            "scenario     verdict  req/s ratio  p99 ratio",
            "health_live  PASS            0.60       2.00",
            "auth_login   ERROR              -          -",
        ]

    def test_header_states_cores_python_backend_and_sharing(self) -> None:
        facts = {
            "cores": 2,
            "cpu": "AMD EPYC",
            "python": "3.11.7",
            "backend": "postgres",
            "server": "uvicorn 0.54.0 (uvloop, httptools)",
            "wrk": "wrk 4.1.0",
            "commit": "abc",
        }
        text = format_header(facts)
        assert "2 cores (AMD EPYC), Python 3.11.7, backend postgres" in text
        assert "share these 2 cores" in text


def repeated(*rates: float, target: Target | None = None) -> RepeatedResult:
    """Runs whose reference served 1,000 req/s and Dashtam `rate` each."""
    target = target or Target(min_rps_ratio=0.6, max_p99_ratio=4.0)
    return RepeatedResult(
        [
            result(measurement("dashtam", rate, 8), measurement("reference", 1000, 4), target)
            for rate in rates
        ]
    )


class TestRepeated:
    def test_judged_on_the_median_not_on_one_unlucky_run(self) -> None:
        runs = repeated(560, 680, 650)
        assert [r.verdict for r in runs.runs] == ["MISS", "PASS", "PASS"]
        assert runs.median_rate_ratio == pytest.approx(0.65)
        assert runs.median_p99_ratio == pytest.approx(2.0)
        assert runs.verdict() == ("PASS", [])

    def test_a_median_below_the_target_misses(self) -> None:
        verdict, reasons = repeated(500, 590, 700).verdict()
        assert verdict == "MISS"
        assert reasons == ["req/s ratio 0.59 < 0.60"]

    def test_any_failed_run_makes_the_whole_an_error(self) -> None:
        runs = repeated(700, 700)
        runs.runs.append(result(None, None, Target(0.6), error="boom"))
        assert runs.verdict() == ("ERROR", ["1 of 3 runs ERROR"])

    def test_report_only_scenarios_stay_report_only(self) -> None:
        runs = RepeatedResult([result(measurement("dashtam", 5, 8), None)])
        assert runs.verdict() == ("REPORT", [])
        assert runs.median_rate_ratio is None

    def test_summary_shows_medians_and_every_run(self) -> None:
        text = format_repeat_summary([repeated(560, 680, 650)])
        assert "median req/s" in text.splitlines()[0]
        line = text.splitlines()[1]
        assert line.split()[:4] == ["health_live", "PASS", "0.65", "2.00"]
        assert line.endswith("0.56, 0.68, 0.65")

    def test_results_file_holds_the_repeat_summaries(self, tmp_path: Path) -> None:
        runs = repeated(560, 680, 650)
        path = tmp_path / "results.json"
        write_json(path, runs.runs, {}, {"repeat": 3}, [runs])
        (summary,) = json.loads(path.read_text())["repeats"]
        assert summary["runs"] == 3
        assert summary["median_rate_ratio"] == pytest.approx(0.65)
        assert summary["verdict"] == "PASS"
        assert len(json.loads(path.read_text())["results"]) == 3


class TestJson:
    def test_results_file_holds_facts_settings_and_ratios(self, tmp_path: Path) -> None:
        r = result(measurement("dashtam", 600, 8), measurement("reference", 1000, 4), Target(0.6))
        path = tmp_path / "out" / "results.json"
        write_json(path, [r], {"cores": 2}, {"duration_s": 10})
        data = json.loads(path.read_text())
        assert data["machine"] == {"cores": 2}
        assert data["settings"] == {"duration_s": 10}
        (saved,) = data["results"]
        assert saved["verdict"] == "PASS"
        assert saved["rate_ratio"] == pytest.approx(0.6)
        assert saved["target"] == {
            "min_rps_ratio": 0.6,
            "max_p99_ratio": None,
            "max_p50_ratio": None,
        }
        assert saved["dashtam"]["p99_ms"] == 8
