"""Python-driven flows: timing iterations, percentiles, measurements and scenario kinds."""

from __future__ import annotations

import httpx
import pytest
from bench.runner import flow_measurement, percentile, time_iterations
from bench.scenarios import discover
from bench.scenarios.base import (
    DashtamHttp,
    FlowStep,
    HttpLoad,
    HttpRequest,
    PythonFlow,
    Scenario,
    Target,
)
from bench.scenarios.connections import (
    FlowFailed,
    LoginForm,
    System,
    code_from_redirect,
    expect,
)


async def no_setup(_: object) -> FlowStep:
    async def run() -> None:
        return None

    return FlowStep(run=run)


class FakeClock:
    """Advances only inside `run`, so the test knows exactly what was timed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TestTimeIterations:
    async def test_runs_until_the_duration_and_times_only_run(self) -> None:
        clock = FakeClock()
        calls: list[str] = []

        async def before() -> None:
            calls.append("before")
            clock.now += 100.0  # untimed: must not count toward the duration

        async def run() -> None:
            calls.append("run")
            clock.now += 0.25

        times = await time_iterations(
            run, before, duration_s=1.0, min_iterations=1, max_iterations=100, clock=clock
        )
        assert times == [0.25] * 4
        assert calls == ["before", "run"] * 4

    async def test_min_and_max_iterations_win_over_the_duration(self) -> None:
        clock = FakeClock()

        async def slow() -> None:
            clock.now += 10.0

        async def fast() -> None:
            clock.now += 0.001

        slow_times = await time_iterations(
            slow, None, duration_s=1.0, min_iterations=3, max_iterations=10, clock=clock
        )
        assert len(slow_times) == 3
        fast_times = await time_iterations(
            fast, None, duration_s=1.0, min_iterations=1, max_iterations=7, clock=clock
        )
        assert len(fast_times) == 7


class TestFlowMeasurement:
    def test_nearest_rank_percentiles(self) -> None:
        values = [float(n) for n in range(1, 101)]
        assert percentile(values, 50) == 50.0
        assert percentile(values, 99) == 99.0
        assert percentile([3.0], 99) == 3.0
        with pytest.raises(ValueError, match="no values"):
            percentile([], 50)

    def test_rate_is_iterations_per_second_of_timed_work(self) -> None:
        measured = flow_measurement("dashtam", [0.01, 0.03, 0.02, 0.04])
        assert measured.method == "flow"
        assert measured.rate == pytest.approx(4 / 0.1)
        assert measured.count == 4
        assert measured.p50_ms == pytest.approx(20.0)
        assert measured.p99_ms == pytest.approx(40.0)
        assert measured.valid
        assert "4 sequential iterations" in measured.setup


class TestFlowScenarios:
    def test_flows_pair_with_flows_and_allow_p99_targets(self) -> None:
        scenario = Scenario(
            name="journey",
            description="d",
            subject=PythonFlow(setup=no_setup),
            reference=PythonFlow(setup=no_setup),
            target=Target(min_rps_ratio=0.5, max_p99_ratio=3.0),
        )
        assert scenario.kind == "flow_vs_flow"

    def test_iteration_bounds_are_checked(self) -> None:
        with pytest.raises(ValueError, match="min_iterations"):
            PythonFlow(setup=no_setup, min_iterations=0)
        with pytest.raises(ValueError, match="min_iterations"):
            PythonFlow(setup=no_setup, min_iterations=5, max_iterations=4)
        with pytest.raises(ValueError, match="warmup_iterations"):
            PythonFlow(setup=no_setup, warmup_iterations=-1)

    def test_dashtam_can_be_its_own_reference(self) -> None:
        load = HttpLoad((HttpRequest(),))
        scenario = Scenario(
            name="same",
            description="d",
            subject=DashtamHttp(load=load),
            reference=DashtamHttp(load=load),
            target=Target(min_rps_ratio=0.8),
        )
        assert scenario.kind == "http_vs_http"

    def test_the_auth_and_connection_scenarios_are_registered(self) -> None:
        registry = discover()
        assert registry["auth_login"].kind == "http_vs_function"
        assert registry["auth_me"].kind == "http_vs_http"
        assert registry["auth_refresh"].kind == "http_vs_http"
        assert registry["connect_round_trip"].kind == "flow_vs_flow"
        assert registry["refresh_vs_plain"].kind == "flow_vs_flow"
        assert registry["connect_round_trip"].target == Target(min_rps_ratio=1 / 3)
        assert registry["refresh_vs_plain"].target == Target(min_rps_ratio=0.5)
        # Context for the connect journey: reported, never judged.
        assert registry["connect_institution_hops"].kind == "flow_vs_flow"
        assert registry["connect_institution_hops"].target is None


LOGIN_PAGE = """<html><body><h1>Log in</h1>
<form method="post" action="/v1/oauth/authorize">
<input type="hidden" name="client_id" value="app">
<input type="hidden" name="state" value="p.s&amp;1">
<input type="text" name="username" value="">
<button type="submit" name="action" value="login">Log in</button>
</form>
<form action="/other"><input name="ignored" value="x"></form>
</body></html>"""


class TestConnectionHelpers:
    def test_login_form_reads_the_first_form_like_a_browser(self) -> None:
        form = LoginForm()
        form.feed(LOGIN_PAGE)
        assert form.action == "/v1/oauth/authorize"
        assert form.fields == {"client_id": "app", "state": "p.s&1", "username": ""}

    def test_code_and_state_come_from_the_redirect(self) -> None:
        assert code_from_redirect("https://127.0.0.1:8182/?code=C%2B1&state=S") == ("C+1", "S")
        with pytest.raises(FlowFailed, match="without code"):
            code_from_redirect("https://127.0.0.1:8182/?error=access_denied&state=S")

    def test_expect_fails_with_what_came_back(self) -> None:
        request = httpx.Request("GET", "https://127.0.0.1/x")
        ok = httpx.Response(200, request=request)
        assert expect(ok, 200) is ok
        with pytest.raises(FlowFailed, match="GET /x answered 500, expected 200: boom"):
            expect(httpx.Response(500, text="boom", request=request), 200)

    def test_system_builds_the_simulator_form_and_basic_auth(self) -> None:
        system = System(
            api_url="a",
            simulator_url="s",
            callback_url=None,
            redirect_uri="https://127.0.0.1:9",
            client_id="id",
            client_secret="secret",
            headers={},
            provider_id="p",
        )
        assert system.basic_auth() == {"Authorization": "Basic aWQ6c2VjcmV0"}
        form = system.authorize_form("st")
        assert form["state"] == "st"
        assert form["redirect_uri"] == "https://127.0.0.1:9"
        assert form["action"] == "login"
