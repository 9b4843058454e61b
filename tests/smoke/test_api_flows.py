"""The `docs/api-flows/` guides, run as written against a live system over HTTPS.

Each guide gets its own fresh system (the processes `dashtam dev` starts, on free ports, in a
temp work directory with its own `certs/`, `var/` and `var/mail` outbox). Every `bash` block
runs in order with `bash -e -o pipefail`; the HTTP status of its last `curl` must equal the
guide's `Expected:` line. A failing step is a bug in the guide or in the code: fix one of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.flows import (
    FLOWS_DIR,
    FlowShell,
    discover_guides,
    parse_flow,
    parse_flow_file,
    run_flow,
    run_system,
)
from tests.support.live import LiveProcess, run_dashtam

pytestmark = pytest.mark.smoke

GUIDES = discover_guides()


def test_the_guides_directory_holds_guides() -> None:
    # Without guides the parametrised test below would be skipped as an empty set.
    assert GUIDES, f"no guides under {FLOWS_DIR} besides the template"


@pytest.mark.parametrize("guide", GUIDES, ids=[str(p.relative_to(FLOWS_DIR)) for p in GUIDES])
def test_guide_runs_as_written(guide: Path, tmp_path: Path) -> None:
    flow = parse_flow_file(guide)
    assert flow.checked_steps, (
        f"{guide.name} has no runnable step with `Expected: <status>`: nothing would be checked"
    )
    with run_system(tmp_path) as system:
        report = run_flow(
            flow,
            system.shell(),
            ca_file=system.ca_file,
            simulator_url=system.urls.get("simulator"),
        )
        logs = system.logs()
    assert not report.failures, report.describe(logs=logs)


# --- the runner itself must be able to fail ---------------------------------------------------


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> LiveProcess:
    workdir = tmp_path_factory.mktemp("flow-runner")
    with run_dashtam(
        "api", workdir=workdir, env={"ENVIRONMENT": "development", "LOG_FORMAT": "json"}
    ) as live:
        yield live  # type: ignore[misc]


def _shell(api: LiveProcess, tmp_path: Path) -> FlowShell:
    workdir = tmp_path / "work"
    (workdir / "certs").mkdir(parents=True)
    (workdir / "certs" / "ca.pem").write_bytes(api.ca_file.read_bytes())
    return FlowShell(
        workdir,
        {"API_URL": api.base_url, "BASE_URL": f"{api.base_url}/api/v1", "CACERT": "certs/ca.pem"},
        {"api": api.base_url},
    )


def _run(api: LiveProcess, tmp_path: Path, guide: str):  # type: ignore[no-untyped-def]
    return run_flow(parse_flow(guide), _shell(api, tmp_path), ca_file=api.ca_file)


class TestRunnerAgainstALiveApi:
    def test_a_true_guide_passes_and_variables_carry_between_blocks(
        self, api: LiveProcess, tmp_path: Path
    ) -> None:
        guide = """
```bash
export BASE_URL=https://127.0.0.1:8000/api/v1
export CACERT=certs/ca.pem
```

Expected: no output

```bash
HEALTH=$(curl --silent --show-error --cacert "$CACERT" "${BASE_URL%/api/v1}/health/live")
```

Expected: 200

```bash
test "$HEALTH" = '{"status":"ok"}'
curl --silent --show-error --cacert certs/ca.pem https://127.0.0.1:8000/health/live
```

Expected: 200
"""
        report = _run(api, tmp_path, guide)
        assert report.failures == [], report.describe()
        assert [o.state for o in report.outcomes] == ["ok", "ok", "ok"]

    def test_a_wrong_status_fails_the_step(self, api: LiveProcess, tmp_path: Path) -> None:
        guide = """
```bash
curl --silent --cacert "$CACERT" "$BASE_URL/no-such-thing"
```

Expected: 200
"""
        report = _run(api, tmp_path, guide)
        assert [f.reason for f in report.failures] == ["expected HTTP 200, got 404"]

    def test_the_last_request_of_a_block_decides(self, api: LiveProcess, tmp_path: Path) -> None:
        guide = """
```bash
curl --silent --cacert "$CACERT" "$API_URL/health/live" > /dev/null
curl --silent --cacert "$CACERT" "$BASE_URL/no-such-thing" | cat
```

Expected: 404
"""
        report = _run(api, tmp_path, guide)
        assert report.failures == [], report.describe()
        assert report.outcomes[0].result is not None
        assert report.outcomes[0].result.statuses == ("200", "404")

    def test_a_failing_command_fails_even_inside_a_pipeline(
        self, api: LiveProcess, tmp_path: Path
    ) -> None:
        guide = """
```bash
curl --silent --cacert "$CACERT" "$API_URL/health/live" | false | cat
```

Expected: 200
"""
        report = _run(api, tmp_path, guide)
        assert [f.reason for f in report.failures] == ["the block exited with 1"]

    def test_a_status_expected_from_a_block_without_requests_fails(
        self, api: LiveProcess, tmp_path: Path
    ) -> None:
        guide = """
```bash
echo nothing
```

Expected: 201
"""
        report = _run(api, tmp_path, guide)
        assert "made no HTTP request" in report.failures[0].reason

    def test_an_unverified_server_is_a_failure_not_a_pass(
        self, api: LiveProcess, tmp_path: Path
    ) -> None:
        # Without --cacert curl cannot verify the local CA: status 000 and curl's exit 60.
        guide = """
```bash
curl --silent "$API_URL/health/live"
```

Expected: 200
"""
        report = _run(api, tmp_path, guide)
        assert report.failures[0].reason == "the block exited with 60"
        assert report.failures[0].result is not None
        assert report.failures[0].result.statuses == ("000",)


class TestBrowserLoginStep:
    def test_without_a_simulator_the_step_fails(self, api: LiveProcess, tmp_path: Path) -> None:
        guide = """
```bash
AUTHORIZATION_URL=https://127.0.0.1:8443/v1/oauth/authorize
```

<!-- flow: browser-login AUTHORIZATION_URL demo demo-password -->

Expected: 200
"""
        report = _run(api, tmp_path, guide)
        assert report.failures[0].reason == "no simulator is running for a browser-login step"

    def test_the_whole_system_starts_and_an_empty_url_fails_the_step(self, tmp_path: Path) -> None:
        guide = """
```bash
curl --silent --show-error --cacert "$CACERT" "$CALLBACK_URL/health" | grep -q healthy
curl --silent --show-error --cacert "$CACERT" "$SIMULATOR_URL/health/live"
```

Expected: 200

<!-- flow: browser-login AUTHORIZATION_URL demo demo-password -->

Expected: 200
"""
        with run_system(tmp_path) as system:
            report = run_flow(
                parse_flow(guide),
                system.shell(),
                ca_file=system.ca_file,
                simulator_url=system.urls["simulator"],
            )
        assert [o.state for o in report.outcomes] == ["ok", "failed"], report.describe()
        assert report.failures[0].reason == "$AUTHORIZATION_URL is empty: no authorize URL to open"
