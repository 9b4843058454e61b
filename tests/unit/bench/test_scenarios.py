"""The scenario model and registry: validation, kinds, discovery and selection."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.runner import scenario_config
from bench.scenarios import UnknownScenarioError, build_registry, discover, select
from bench.scenarios.base import (
    DashtamHttp,
    FunctionRef,
    HttpLoad,
    HttpRequest,
    ReferenceHttp,
    Scenario,
    SetupContext,
    Target,
    json_body,
)

from tests.unit.bench.support import run_config

LOAD = HttpLoad((HttpRequest("GET", "/health/live"),))
FUNCTION = FunctionRef(factory="bench.reference.functions:argon2_verify")


def make(name: str = "sample", **overrides: object) -> Scenario:
    values: dict[str, object] = {
        "name": name,
        "description": "d",
        "subject": DashtamHttp(load=LOAD),
        "reference": ReferenceHttp(app="bench.reference.health:create_app", load=LOAD),
        "target": Target(min_rps_ratio=0.5),
    }
    values.update(overrides)
    return Scenario(**values)  # type: ignore[arg-type]


class TestScenario:
    @pytest.mark.parametrize(
        ("subject", "reference", "kind"),
        [
            (DashtamHttp(load=LOAD), ReferenceHttp(app="m:f", load=LOAD), "http_vs_http"),
            (DashtamHttp(load=LOAD), FUNCTION, "http_vs_function"),
            (FUNCTION, FUNCTION, "function_vs_function"),
            (FUNCTION, None, "function_only"),
            (DashtamHttp(load=LOAD), None, "http_only"),
        ],
    )
    def test_kind_follows_the_two_sides(
        self, subject: object, reference: object, kind: str
    ) -> None:
        assert make(subject=subject, reference=reference, target=None).kind == kind

    @pytest.mark.parametrize("name", ["Health", "auth-login", "1st", ""])
    def test_names_must_be_lower_snake_case(self, name: str) -> None:
        with pytest.raises(ValueError, match="lower_snake_case"):
            make(name)

    def test_a_target_needs_a_reference(self) -> None:
        with pytest.raises(ValueError, match="needs a reference"):
            make(reference=None)

    def test_p99_targets_are_refused_across_http_and_function(self) -> None:
        with pytest.raises(ValueError, match="same kind"):
            make(reference=FUNCTION, target=Target(max_p99_ratio=4))
        assert make(reference=FUNCTION, target=Target(min_rps_ratio=0.6)).kind == (
            "http_vs_function"
        )


class TestParts:
    def test_target_needs_a_threshold_and_describes_itself(self) -> None:
        with pytest.raises(ValueError, match="min_rps_ratio"):
            Target()
        assert Target(0.6, 4).describe() == "req/s ratio >= 0.60, p99 ratio <= 4.00"
        assert Target(max_p99_ratio=2).describe() == "p99 ratio <= 2.00"

    @pytest.mark.parametrize(("method", "path"), [("get", "/"), ("GET", "health"), ("G T", "/")])
    def test_requests_are_validated(self, method: str, path: str) -> None:
        with pytest.raises(ValueError, match="path|method"):
            HttpRequest(method, path)

    def test_empty_load_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least one"):
            HttpLoad(())

    def test_function_factory_must_name_module_and_function(self) -> None:
        with pytest.raises(ValueError, match="module:function"):
            FunctionRef(factory="bench.reference.functions")
        assert FunctionRef(factory="m:f", processes=3).process_count() == 3
        assert FunctionRef(factory="m:f").process_count() >= 1

    def test_json_body_is_compact_with_its_content_type(self) -> None:
        assert json_body({"a": 1, "b": [2]}) == (
            {"Content-Type": "application/json"},
            '{"a":1,"b":[2]}',
        )

    def test_setup_context_database_url(self, tmp_path: Path) -> None:
        def context(env: dict[str, str]) -> SetupContext:
            return SetupContext("https://x", tmp_path / "ca.pem", env, "embedded", tmp_path)

        assert context({"DATABASE_URL": "postgresql+asyncpg://h/db"}).database_url == (
            "postgresql+asyncpg://h/db"
        )
        sqlite = context({"VAR_DIR": str(tmp_path / "var")}).database_url
        assert sqlite == f"sqlite+aiosqlite:///{(tmp_path / 'var' / 'dashtam.db').as_posix()}"


class TestMinimumDuration:
    def test_a_slow_scenario_is_measured_for_at_least_its_minimum(self, tmp_path: Path) -> None:
        config = run_config(tmp_path, duration_s=10)
        assert scenario_config(make(min_duration_s=30), config).duration_s == 30
        assert scenario_config(make(min_duration_s=30), config).warmup_s == 3

    def test_a_longer_requested_window_wins(self, tmp_path: Path) -> None:
        config = run_config(tmp_path, duration_s=60)
        assert scenario_config(make(min_duration_s=30), config) is config
        assert scenario_config(make(), run_config(tmp_path, duration_s=5)).duration_s == 5

    def test_negative_minimum_is_refused(self) -> None:
        with pytest.raises(ValueError, match="min_duration_s"):
            make(min_duration_s=-1)

    def test_login_is_measured_long_enough_to_count_hundreds_of_requests(self) -> None:
        assert discover()["auth_login"].min_duration_s >= 30


class TestRegistry:
    def test_discovery_finds_the_shipped_scenarios_in_name_order_of_modules(self) -> None:
        registry = discover()
        assert {"health_live", "argon2_verify_rate"} <= set(registry)
        assert registry["health_live"].kind == "http_vs_http"
        assert registry["health_live"].target == Target(min_rps_ratio=0.6, max_p99_ratio=4.0)
        assert registry["argon2_verify_rate"].kind == "function_only"
        assert registry["argon2_verify_rate"].target is None

    def test_duplicate_names_are_refused(self) -> None:
        with pytest.raises(ValueError, match="duplicate scenario name: a"):
            build_registry([make("a"), make("b"), make("a")])

    def test_non_scenarios_are_refused(self) -> None:
        with pytest.raises(TypeError):
            build_registry([make("a"), "b"])  # type: ignore[list-item]

    def test_select_all_by_default_in_registry_order(self) -> None:
        registry = build_registry([make("b"), make("a")])
        assert [s.name for s in select(registry, None)] == ["b", "a"]
        assert [s.name for s in select(registry, [])] == ["b", "a"]

    def test_select_keeps_the_requested_order_once_each(self) -> None:
        registry = build_registry([make("a"), make("b"), make("c")])
        assert [s.name for s in select(registry, ["c", "a", "c"])] == ["c", "a"]

    def test_unknown_names_are_listed_with_the_known_ones(self) -> None:
        registry = build_registry([make("a")])
        with pytest.raises(UnknownScenarioError, match="unknown scenario.*nope.*known: a"):
            select(registry, ["a", "nope"])
