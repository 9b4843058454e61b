"""The guide parser behind `tests/smoke/test_api_flows.py`: steps, expectations, markers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.flows import (
    FLOWS_DIR,
    TEMPLATE_NAME,
    BlockResult,
    FlowShell,
    FlowSyntaxError,
    check_block,
    discover_guides,
    parse_expected,
    parse_flow,
    parse_flow_file,
)

GUIDE = """# Flow: demo journey

## Prerequisites

```bash
export BASE_URL=https://127.0.0.1:8000/api/v1
```

## Steps

### 1. Register

```bash
curl --cacert "$CACERT" -X POST "$BASE_URL/auth/register" -d '{}'
```

Expected: 202

```json
{"message": "Check your inbox"}
```

### 2. Keep the id

```bash
export THING_ID=abc
```

Expected: no output

### 3. Connect

<!-- flow: browser-login AUTHORIZATION_URL demo demo-password -->

```text
Open $AUTHORIZATION_URL in a browser and log in as demo / demo-password.
```

Expected: 200 (the callback page says "Connected")

<!-- flow: manual opens a desktop browser -->
```bash
xdg-open "$AUTHORIZATION_URL"
```

```python
print("never run")
```
"""


class TestParseFlow:
    def test_steps_come_in_document_order_with_their_kinds(self) -> None:
        flow = parse_flow(GUIDE)
        assert [s.kind for s in flow.steps] == [
            "shell",
            "shell",
            "shell",
            "browser_login",
            "manual",
        ]
        assert [s.number for s in flow.steps] == [1, 2, 3, 4, 5]
        assert flow.title == "Flow: demo journey"

    def test_expectations_attach_to_the_step_before_them(self) -> None:
        steps = parse_flow(GUIDE).steps
        assert steps[0].expected is None
        assert steps[1].expected is not None and steps[1].expected.status == 202
        assert steps[2].expected is not None and steps[2].expected.no_output
        assert steps[3].expected is not None and steps[3].expected.status == 200
        assert steps[4].expected is None

    def test_block_code_headings_and_lines_are_kept(self) -> None:
        step = parse_flow(GUIDE).steps[1]
        assert step.code == 'curl --cacert "$CACERT" -X POST "$BASE_URL/auth/register" -d \'{}\''
        assert step.heading == "1. Register"
        assert step.line == 13

    def test_browser_login_and_manual_markers_carry_their_arguments(self) -> None:
        steps = parse_flow(GUIDE).steps
        assert steps[3].args == ("AUTHORIZATION_URL", "demo", "demo-password")
        assert steps[4].reason == "opens a desktop browser"
        assert not steps[4].runnable
        assert parse_flow(GUIDE).needs_institution

    def test_checked_steps_are_the_runnable_ones_with_a_status(self) -> None:
        flow = parse_flow(GUIDE)
        assert [s.number for s in flow.checked_steps] == [2, 4]

    def test_non_bash_blocks_and_expected_inside_fences_are_ignored(self) -> None:
        text = "```json\nExpected: 500\n```\n\n```console\n$ curl x\n```\n"
        assert parse_flow(text).steps == []

    def test_indented_fences_in_lists_are_steps_with_dedented_code(self) -> None:
        text = (
            "1. Do it:\n\n    ```bash\n    echo one\n      echo two\n    ```\n\n"
            "    Expected: no output\n"
        )
        (step,) = parse_flow(text).steps
        assert step.code == "echo one\n  echo two"
        assert step.expected is not None and step.expected.no_output

    def test_longer_fences_close_only_on_a_long_enough_fence(self) -> None:
        text = "````bash\necho '```'\n```\necho still inside\n````\n"
        (step,) = parse_flow(text).steps
        assert step.code == "echo '```'\n```\necho still inside"

    def test_a_guide_without_bash_blocks_has_no_steps(self) -> None:
        flow = parse_flow("# Nothing\n\nJust prose.\n")
        assert flow.steps == []
        assert flow.checked_steps == []


class TestParseFlowRejects:
    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("Expected: 200\n", "before any step"),
            ("```bash\ntrue\n```\nExpected: 200\nExpected: 201\n", "a second `Expected:`"),
            ("```bash\ntrue\n```\nExpected: maybe\n", "neither an HTTP status"),
            ("```bash\ntrue\n", "never closed"),
            ("<!-- flow: teleport -->\n", "unknown flow marker"),
            ("<!-- flow: browser-login URL demo -->\n", "browser-login VAR USER PASSWORD"),
            ("<!-- flow: browser-login URL a b -->\n", "needs `Expected: <status>`"),
            ("<!-- flow: manual -->\n```bash\ntrue\n```\n", "needs a reason"),
            ("<!-- flow: manual because -->\nprose only\n", "not followed by a bash block"),
        ],
    )
    def test_broken_conventions_name_the_line(self, text: str, message: str) -> None:
        with pytest.raises(FlowSyntaxError, match="line") as caught:
            parse_flow(text)
        assert message in str(caught.value)


class TestParseExpected:
    @pytest.mark.parametrize(
        ("value", "status"),
        [("201", 201), ("`404`", 404), ("200 with the user", 200), ("429 (throttled)", 429)],
    )
    def test_statuses(self, value: str, status: int) -> None:
        assert parse_expected(value, line=1).status == status

    @pytest.mark.parametrize("value", ["no output", "No output", "`no output`"])
    def test_no_output(self, value: str) -> None:
        assert parse_expected(value, line=1).no_output

    @pytest.mark.parametrize("value", ["2000", "OK", "200 or 202", "201/202", ""])
    def test_anything_else_is_an_error(self, value: str) -> None:
        with pytest.raises(FlowSyntaxError):
            parse_expected(value, line=7)


class TestCheckBlock:
    def _step(self, expected: str | None):  # type: ignore[no-untyped-def]
        text = "```bash\ntrue\n```\n" + (f"Expected: {expected}\n" if expected else "")
        return parse_flow(text).steps[0]

    def test_matching_last_status_passes(self) -> None:
        result = BlockResult(0, "", "", ("500", "201"), 0.1)
        assert check_block(self._step("201"), result) is None

    def test_an_earlier_matching_status_does_not_count(self) -> None:
        result = BlockResult(0, "", "", ("201", "500"), 0.1)
        assert check_block(self._step("201"), result) == "expected HTTP 201, got 500"

    def test_a_connection_failure_is_reported_as_000(self) -> None:
        result = BlockResult(0, "", "", ("000",), 0.1)
        assert check_block(self._step("200"), result) == "expected HTTP 200, got 000"

    def test_a_non_zero_exit_fails_whatever_the_status(self) -> None:
        result = BlockResult(3, "", "", ("200",), 0.1)
        assert check_block(self._step("200"), result) == "the block exited with 3"
        assert check_block(self._step(None), result) == "the block exited with 3"

    def test_no_output_means_nothing_on_stdout(self) -> None:
        assert check_block(self._step("no output"), BlockResult(0, "\n", "", (), 0.1)) is None
        reason = check_block(self._step("no output"), BlockResult(0, "hi\n", "", (), 0.1))
        assert reason == "`Expected: no output` but the block printed something"

    def test_a_status_without_any_request_fails(self) -> None:
        reason = check_block(self._step("200"), BlockResult(0, "", "", (), 0.1))
        assert reason is not None and "made no HTTP request" in reason


class TestUrlMapping:
    def test_default_addresses_map_to_the_live_processes(self, tmp_path: Path) -> None:
        shell = FlowShell(
            tmp_path,
            {},
            {"api": "https://127.0.0.1:50001", "simulator": "https://127.0.0.1:50003"},
        )
        assert shell.map_url("https://127.0.0.1:8000/health") == "https://127.0.0.1:50001/health"
        assert shell.map_url("https://localhost:8443/v1/oauth") == (
            "https://127.0.0.1:50003/v1/oauth"
        )
        assert shell.map_url("https://127.0.0.1:8182/?code=x") == "https://127.0.0.1:8182/?code=x"
        assert shell.map_url("https://example.com:8000/") == "https://example.com:8000/"


class TestRepositoryGuides:
    def test_the_template_is_not_a_guide(self) -> None:
        assert all(p.name != TEMPLATE_NAME for p in discover_guides())

    def test_the_template_parses_and_follows_its_own_rules(self) -> None:
        flow = parse_flow_file(FLOWS_DIR / TEMPLATE_NAME)
        assert flow.checked_steps
        assert all(s.expected is not None for s in flow.runnable_steps)

    @pytest.mark.parametrize("guide", discover_guides(), ids=lambda p: p.name)
    def test_every_guide_parses_and_has_checked_steps(self, guide: Path) -> None:
        assert parse_flow_file(guide).checked_steps
