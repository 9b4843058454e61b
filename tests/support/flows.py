"""Run the `docs/api-flows/` guides as written: parse their steps, execute them, check statuses.

A guide is Markdown. Its steps are, in order of appearance:

- every fenced ```` ```bash ```` block: run with `bash -e -o pipefail` in the work directory of a
  live system, the shell variables of earlier blocks restored;
- a marker `<!-- flow: browser-login VAR USER PASSWORD -->`: a browser step the runner plays
  itself — it opens the URL held in `$VAR` (the institution's authorize URL), posts the
  simulator's login form as USER / PASSWORD and follows the redirect to the callback server;
- a `bash` block preceded by `<!-- flow: manual REASON -->` is shown to readers but never run
  (the reason is reported).

Each step may be followed by a line `Expected: <status>` (the HTTP status of the last request
the step made) or `Expected: no output` (the step prints nothing on stdout). A step without an
`Expected:` line must still exit 0. See `docs/api-flows/flow-template.md` ("Notes for
writers") for the conventions guides follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import subprocess
import textwrap
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
FLOWS_DIR = REPO_ROOT / "docs" / "api-flows"
TEMPLATE_NAME = "flow-template.md"

#: Where a guide reader's processes listen under `make run`; the runner maps them to the live
#: processes so a URL written out literally still reaches the system under test.
DEFAULT_ORIGINS = {
    "api": ("https://127.0.0.1:8000", "https://localhost:8000"),
    "callback": ("https://127.0.0.1:8182", "https://localhost:8182"),
    "simulator": ("https://127.0.0.1:8443", "https://localhost:8443"),
}

StepKind = Literal["shell", "browser_login", "manual"]

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*#*\s*$")
_MARKER = re.compile(r"^\s*<!--\s*flow:\s*(?P<body>.*?)\s*-->\s*$")
_EXPECTED = re.compile(r"^\s*Expected:\s*(?P<value>.*?)\s*$")
_STATUS = re.compile(r"^`?(?P<status>[1-5]\d\d)\b")
_ALTERNATIVE = re.compile(r"^`?\s*(?:or|/|,)\s*`?[1-5]\d\d\b")
_NO_OUTPUT = re.compile(r"^`?no output`?\b", re.IGNORECASE)
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RUNNABLE_LANGUAGES = frozenset({"bash"})


class FlowSyntaxError(ValueError):
    """A guide breaks the conventions the runner relies on (with the line number)."""


@dataclass(frozen=True)
class Expectation:
    """What a step must produce: an HTTP status, or no output at all."""

    status: int | None
    text: str

    @property
    def no_output(self) -> bool:
        """True for `Expected: no output`."""
        return self.status is None


@dataclass
class Step:
    """One step of a guide, in document order."""

    number: int
    kind: StepKind
    line: int
    heading: str
    code: str = ""
    args: tuple[str, ...] = ()
    reason: str = ""
    expected: Expectation | None = None

    @property
    def runnable(self) -> bool:
        """Whether the runner executes this step (manual ones are only shown to readers)."""
        return self.kind != "manual"

    def describe(self) -> str:
        """`step 3 (line 42, "Log in")` — how failures name a step."""
        return f'step {self.number} (line {self.line}, "{self.heading}")'


@dataclass
class Flow:
    """A parsed guide."""

    path: Path | None
    title: str
    steps: list[Step] = field(default_factory=list)

    @property
    def runnable_steps(self) -> list[Step]:
        """The steps the runner executes."""
        return [step for step in self.steps if step.runnable]

    @property
    def checked_steps(self) -> list[Step]:
        """Runnable steps with an HTTP status to check."""
        return [s for s in self.runnable_steps if s.expected is not None and s.expected.status]

    @property
    def needs_institution(self) -> bool:
        """Whether the guide plays the institution's login (so it needs the simulator)."""
        return any(step.kind == "browser_login" for step in self.steps)


# --- parsing -------------------------------------------------------------------------------


def parse_expected(value: str, *, line: int) -> Expectation:
    """Parse the text after `Expected:` — a status like `201` (text may follow) or `no output`."""
    if match := _STATUS.match(value):
        if _ALTERNATIVE.search(value[match.end() :]):
            raise FlowSyntaxError(
                f"line {line}: `Expected: {value}` offers alternatives; a step expects one status"
            )
        return Expectation(int(match.group("status")), value)
    if _NO_OUTPUT.match(value):
        return Expectation(None, value)
    raise FlowSyntaxError(
        f"line {line}: `Expected: {value}` is neither an HTTP status (e.g. `Expected: 201`) "
        "nor `Expected: no output`"
    )


def _parse_marker(body: str, *, line: int) -> tuple[str, tuple[str, ...]]:
    words = shlex.split(body)
    if not words:
        raise FlowSyntaxError(f"line {line}: empty `<!-- flow: -->` marker")
    name, args = words[0], tuple(words[1:])
    if name == "browser-login":
        if len(args) != 3 or not _VAR_NAME.match(args[0].lstrip("$")):
            raise FlowSyntaxError(
                f"line {line}: use `<!-- flow: browser-login VAR USER PASSWORD -->` "
                "(VAR holds the authorize URL)"
            )
        return name, (args[0].lstrip("$"), args[1], args[2])
    if name == "manual":
        if not args:
            raise FlowSyntaxError(
                f"line {line}: `<!-- flow: manual REASON -->` needs a reason readers can see"
            )
        return name, (" ".join(args),)
    raise FlowSyntaxError(
        f"line {line}: unknown flow marker {name!r} (known: browser-login, manual)"
    )


def parse_flow(text: str, path: Path | None = None) -> Flow:
    """Split a guide into its steps.

    Raises:
        FlowSyntaxError: An `Expected:` line belongs to no step or repeats, a marker is
            malformed or dangling, or a fence is never closed.
    """
    lines = text.splitlines()
    flow = Flow(path=path, title=path.stem if path else "guide")
    heading = ""
    pending_manual: tuple[int, str] | None = None
    fence: str | None = None
    fence_info = ""
    fence_line = 0
    body: list[str] = []

    def add(kind: StepKind, line: int, **values: object) -> None:
        flow.steps.append(
            Step(number=len(flow.steps) + 1, kind=kind, line=line, heading=heading, **values)  # type: ignore[arg-type]
        )

    for index, raw in enumerate(lines, start=1):
        if fence is not None:
            stripped = raw.strip()
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
                language = fence_info.split()[0].lower() if fence_info.split() else ""
                if language in RUNNABLE_LANGUAGES:
                    code = textwrap.dedent("\n".join(body)).strip("\n")
                    if pending_manual is not None:
                        add("manual", fence_line, code=code, reason=pending_manual[1])
                        pending_manual = None
                    else:
                        add("shell", fence_line, code=code)
                fence = None
                body = []
            else:
                body.append(raw)
            continue
        if match := _FENCE.match(raw):
            fence, fence_info, fence_line = match.group("fence"), match.group("info"), index
            continue
        if match := _HEADING.match(raw):
            heading = match.group("title")
            if not flow.steps and raw.startswith("# "):
                flow.title = heading
            continue
        if match := _MARKER.match(raw):
            name, args = _parse_marker(match.group("body"), line=index)
            if pending_manual is not None:
                raise FlowSyntaxError(
                    f"line {pending_manual[0]}: `manual` marker is not followed by a bash block"
                )
            if name == "manual":
                pending_manual = (index, args[0])
            else:
                add("browser_login", index, args=args)
            continue
        if match := _EXPECTED.match(raw):
            expectation = parse_expected(match.group("value"), line=index)
            if not flow.steps:
                raise FlowSyntaxError(f"line {index}: `Expected:` before any step")
            step = flow.steps[-1]
            if step.expected is not None:
                raise FlowSyntaxError(
                    f"line {index}: a second `Expected:` line for {step.describe()}; "
                    "one command per block, one expectation per command"
                )
            step.expected = expectation
    if fence is not None:
        raise FlowSyntaxError(f"line {fence_line}: code fence is never closed")
    if pending_manual is not None:
        raise FlowSyntaxError(
            f"line {pending_manual[0]}: `manual` marker is not followed by a bash block"
        )
    for step in flow.steps:
        if step.kind == "browser_login" and (step.expected is None or step.expected.no_output):
            raise FlowSyntaxError(
                f"line {step.line}: a browser-login step needs `Expected: <status>` "
                "(the callback page's status)"
            )
    return flow


def parse_flow_file(path: Path) -> Flow:
    """Parse a guide file."""
    return parse_flow(path.read_text(encoding="utf-8"), path)


def discover_guides(directory: Path = FLOWS_DIR) -> list[Path]:
    """Every guide under `directory` (sub-folders included), except the template."""
    return sorted(p for p in directory.rglob("*.md") if p.name != TEMPLATE_NAME)


# --- the shell every block runs in ----------------------------------------------------------

#: Sourced before every block. `curl` becomes a function that records the HTTP status of each
#: request (via --dump-header into a temp file, so the guide's own output is untouched) and
#: maps the default `make run` addresses onto the live processes.
_LIB = r"""
curl() {
  local __FLOW_a __FLOW_h __FLOW_rc=0
  local -a __FLOW_args=()
  for __FLOW_a in "$@"; do
    case "$__FLOW_a" in
      -D|--dump-header|--dump-header=*)
        echo "flow runner: guides must not use $__FLOW_a (the runner records statuses with it)" >&2
        return 2;;
    esac
__FLOW_REWRITES__
    __FLOW_args+=("$__FLOW_a")
  done
  __FLOW_h=$(mktemp "$FLOW_DIR/headers.XXXXXX")
  command curl "${__FLOW_args[@]}" --dump-header "$__FLOW_h" || __FLOW_rc=$?
  awk 'toupper($1) ~ /^HTTP\// { s = $2 } END { print (s == "" ? "000" : s) }' "$__FLOW_h" \
    >> "$FLOW_STATUS_FILE"
  rm -f "$__FLOW_h"
  return "$__FLOW_rc"
}
__flow_save() {
  local __FLOW_n
  {
    for __FLOW_n in $(compgen -v); do
      case "$__FLOW_n" in
        __FLOW*|BASH*|FUNCNAME|PIPESTATUS|_|REPLY|OPTARG|OPTIND|COLUMNS|LINES) continue;;
        SECONDS|RANDOM|SRANDOM|LINENO|EPOCHSECONDS|EPOCHREALTIME|GROUPS|HISTCMD) continue;;
        DIRSTACK|PWD|OLDPWD) continue;;
      esac
      case "$__FLOW_BASELINE" in *" $__FLOW_n "*) continue;; esac
      declare -p "$__FLOW_n" 2>/dev/null || true
    done
    for __FLOW_n in $(compgen -A function); do
      case "$__FLOW_FUNCTIONS" in *" $__FLOW_n "*) continue;; esac
      declare -f "$__FLOW_n" || true
    done
  } > "$FLOW_DIR/state.sh.tmp" && mv "$FLOW_DIR/state.sh.tmp" "$FLOW_DIR/state.sh"
}
"""

_PRELUDE = """\
source "$FLOW_DIR/lib.sh"
__FLOW_FUNCTIONS=" $(compgen -A function | tr '\\n' ' ') "
__FLOW_BASELINE=" $(compgen -v | tr '\\n' ' ') "
source "$FLOW_DIR/state.sh"
trap __flow_save EXIT
cd "$FLOW_WORKDIR"
set -e -o pipefail
"""


@dataclass(frozen=True)
class BlockResult:
    """What one block did."""

    returncode: int
    stdout: str
    stderr: str
    statuses: tuple[str, ...]
    seconds: float


class FlowShell:
    """Runs blocks one after another; each sees the variables the earlier ones set.

    Every block is its own `bash` process (so `set -e` cannot take down the others): it
    sources the state the previous block saved with `declare -p` / `declare -f`, runs, and
    saves again on exit. Variables the runner exports (`BASE_URL`, `CACERT` …) are not saved,
    so a guide's own `export BASE_URL=https://127.0.0.1:8000/api/v1` never outlives its block.
    """

    def __init__(
        self,
        workdir: Path,
        variables: Mapping[str, str],
        origins: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.flow_dir = workdir / ".flow"
        self.flow_dir.mkdir(parents=True, exist_ok=True)
        self.status_file = self.flow_dir / "statuses"
        self.origins = dict(origins or {})
        (self.flow_dir / "state.sh").write_text("")
        (self.flow_dir / "lib.sh").write_text(_LIB.replace("__FLOW_REWRITES__", self._rewrites()))
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(workdir)),
            "LANG": "C.UTF-8",
            **variables,
            "FLOW_DIR": str(self.flow_dir),
            "FLOW_WORKDIR": str(workdir),
            "FLOW_STATUS_FILE": str(self.status_file),
        }

    def _rewrites(self) -> str:
        lines = []
        for name, live in self.origins.items():
            for default in DEFAULT_ORIGINS.get(name, ()):
                if default != live:
                    lines.append(f"    __FLOW_a=${{__FLOW_a//{_bash_pattern(default)}/{live}}}")
        return "\n".join(lines)

    def map_url(self, url: str) -> str:
        """A URL with the default `make run` origins replaced by the live ones."""
        for name, live in self.origins.items():
            for default in DEFAULT_ORIGINS.get(name, ()):
                if url.startswith(default):
                    return live + url[len(default) :]
        return url

    def run(self, code: str, *, timeout: float = 120.0) -> BlockResult:
        """Run one block with `bash -e -o pipefail` and the saved state."""
        self.status_file.write_text("")
        script = self.flow_dir / "block.sh"
        script.write_text(_PRELUDE + code + "\n")
        started = time.monotonic()
        try:
            completed = subprocess.run(  # noqa: S603 (bash running the guide's own block)
                ["bash", str(script)],  # noqa: S607
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            returncode, stdout, stderr = completed.returncode, completed.stdout, completed.stderr
        except subprocess.TimeoutExpired as exc:
            returncode = -1
            stdout = _text(exc.stdout)
            stderr = _text(exc.stderr) + f"\n[flow runner] block timed out after {timeout:.0f}s"
        statuses = tuple(self.status_file.read_text().split())
        return BlockResult(returncode, stdout, stderr, statuses, time.monotonic() - started)

    def value(self, name: str) -> str:
        """The current value of a shell variable (as later blocks would see it)."""
        result = self.run(f'printf "%s" "${{{name}:-}}"', timeout=10)
        return result.stdout


def _bash_pattern(literal: str) -> str:
    """Escape a literal for the pattern part of `${var//pattern/…}`."""
    return re.sub(r"([\\/*?\[\]])", r"\\\1", literal)


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


# --- running a guide -----------------------------------------------------------------------


@dataclass
class StepOutcome:
    """The result of one step: `ok`, `failed` or `not run` (manual)."""

    step: Step
    state: Literal["ok", "failed", "not run"]
    reason: str = ""
    result: BlockResult | None = None


@dataclass
class FlowReport:
    """Every step's outcome, with enough detail to fix a failing guide or bug."""

    flow: Flow
    outcomes: list[StepOutcome] = field(default_factory=list)

    @property
    def failures(self) -> list[StepOutcome]:
        """The steps that failed."""
        return [o for o in self.outcomes if o.state == "failed"]

    def describe(self, *, logs: Mapping[str, str] | None = None) -> str:
        """A readable account of the failures (the first one is usually the cause)."""
        name = self.flow.path.name if self.flow.path else self.flow.title
        parts = [f"{name}: {len(self.failures)} of {len(self.outcomes)} steps failed"]
        for number, outcome in enumerate(self.failures):
            step = outcome.step
            later = " (after an earlier failure)" if number else ""
            parts.append(f"\n--- {step.describe()}{later}: {outcome.reason}")
            if step.code:
                parts.append(_indent(step.code))
            if outcome.result is not None:
                result = outcome.result
                parts.append(f"  exit {result.returncode}; HTTP statuses {list(result.statuses)}")
                if result.stdout.strip():
                    parts.append("  stdout:\n" + _indent(_tail(result.stdout)))
                if result.stderr.strip():
                    parts.append("  stderr:\n" + _indent(_tail(result.stderr)))
        skipped = [o for o in self.outcomes if o.state == "not run"]
        for outcome in skipped:
            parts.append(f"\n(not run: {outcome.step.describe()}: {outcome.reason})")
        if self.failures and logs:
            for process, text in logs.items():
                parts.append(f"\n--- last lines of the {process} log:\n" + _indent(_tail(text)))
        return "\n".join(parts)


def _tail(text: str, limit: int = 3000) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def check_block(step: Step, result: BlockResult) -> str | None:
    """Why a shell step failed, or None when it did what the guide says."""
    if result.returncode != 0:
        return f"the block exited with {result.returncode}"
    expected = step.expected
    if expected is None:
        return None
    if expected.no_output:
        if result.stdout.strip():
            return "`Expected: no output` but the block printed something"
        return None
    if not result.statuses:
        return f"`Expected: {expected.status}` but the block made no HTTP request with curl"
    if result.statuses[-1] != str(expected.status):
        return f"expected HTTP {expected.status}, got {result.statuses[-1]}"
    return None


def run_flow(
    flow: Flow,
    shell: FlowShell,
    *,
    ca_file: Path,
    simulator_url: str | None = None,
    block_timeout: float = 120.0,
) -> FlowReport:
    """Run every step of `flow` in order and report each outcome (later steps still run)."""
    report = FlowReport(flow)
    for step in flow.steps:
        if step.kind == "manual":
            report.outcomes.append(StepOutcome(step, "not run", step.reason))
            continue
        if step.kind == "browser_login":
            report.outcomes.append(
                _browser_login(step, shell, ca_file=ca_file, simulator_url=simulator_url)
            )
            continue
        result = shell.run(step.code, timeout=block_timeout)
        reason = check_block(step, result)
        state: Literal["ok", "failed"] = "failed" if reason else "ok"
        report.outcomes.append(StepOutcome(step, state, reason or "", result))
    return report


def _browser_login(
    step: Step, shell: FlowShell, *, ca_file: Path, simulator_url: str | None
) -> StepOutcome:
    """Play the person at the institution: open the URL, log in, follow the redirect."""
    from dashtam.core.tls import client_ssl_context
    from tests.support.simulator import browser_login

    variable, username, password = step.args
    if simulator_url is None:
        return StepOutcome(step, "failed", "no simulator is running for a browser-login step")
    url = shell.map_url(shell.value(variable))
    if not url:
        return StepOutcome(step, "failed", f"${variable} is empty: no authorize URL to open")
    verify = client_ssl_context(ca_file)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    redirect_uri, client_id = query.get("redirect_uri"), query.get("client_id")
    if not url.startswith(simulator_url) or not redirect_uri or not client_id:
        return StepOutcome(
            step,
            "failed",
            f"${variable} is not an authorize URL of the simulator at {simulator_url}: {url!r}",
        )
    with httpx.Client(verify=verify, follow_redirects=False, timeout=30) as browser:
        page = browser.get(url)
        if page.status_code != 200 or "<form" not in page.text:
            return StepOutcome(
                step, "failed", f"the authorize URL answered {page.status_code}, not a login form"
            )

    async def log_in() -> tuple[str, str | None]:
        async with httpx.AsyncClient(
            base_url=simulator_url, verify=verify, follow_redirects=False, timeout=30
        ) as client:
            return await browser_login(
                client,
                username,
                password,
                state=query.get("state"),
                redirect_uri=redirect_uri,
                client_id=client_id,
            )

    try:
        code, state = asyncio.run(log_in())
    except AssertionError as exc:
        return StepOutcome(step, "failed", f"the simulator did not redirect with a code: {exc}")
    params = {"code": code, **({"state": state} if state is not None else {})}
    with httpx.Client(verify=verify, follow_redirects=False, timeout=90) as browser:
        try:
            landing = browser.get(shell.map_url(redirect_uri), params=params)
        except httpx.HTTPError as exc:
            return StepOutcome(step, "failed", f"the callback server did not answer: {exc!r}")
    result = BlockResult(0, landing.text, "", (str(landing.status_code),), 0.0)
    assert step.expected is not None and step.expected.status is not None
    if landing.status_code != step.expected.status:
        return StepOutcome(
            step,
            "failed",
            f"expected the callback page to answer {step.expected.status}, "
            f"got {landing.status_code}",
            result,
        )
    return StepOutcome(step, "ok", "", result)


# --- the live system ------------------------------------------------------------------------


@dataclass
class LiveSystem:
    """The processes a guide runs against, and the variables every block gets."""

    workdir: Path
    ca_file: Path
    urls: dict[str, str]
    log_files: dict[str, Path]

    @property
    def variables(self) -> dict[str, str]:
        """Exported into every block: where the system is and which CA to trust."""
        api = self.urls["api"]
        values = {
            "API_URL": api,
            "BASE_URL": f"{api}/api/v1",
            "CACERT": str(self.ca_file),
            "MAIL_DIR": str(self.workdir / "var" / "mail"),
        }
        if "callback" in self.urls:
            values["CALLBACK_URL"] = self.urls["callback"]
        if "simulator" in self.urls:
            values["SIMULATOR_URL"] = self.urls["simulator"]
        return values

    def logs(self) -> dict[str, str]:
        """Everything each process wrote so far."""
        return {
            name: path.read_text(errors="replace") if path.exists() else ""
            for name, path in self.log_files.items()
        }

    def shell(self) -> FlowShell:
        """A fresh shell for one guide."""
        return FlowShell(self.workdir, self.variables, self.urls)


#: Client id and secret the simulator and the API's Schwab provider share for a run.
FLOW_CLIENT_ID = "FlowRunnerClientId0123456789abcd"
FLOW_CLIENT_SECRET = "FlowRunnerClientSecret0123456789abcdef0123456789abcdef012345"
_PORTED = frozenset({"api", "callback", "simulator"})


@contextlib.contextmanager
def run_system(workdir: Path, *, with_institution: bool = True) -> Iterator[LiveSystem]:
    """Start what `dashtam dev` starts, as separate live processes on free ports.

    The process list and each one's environment come from `dev_processes()` (the function
    `dashtam dev` itself uses), built for the ports chosen here, so the runner starts exactly
    what a reader's `make run` starts. Everything lives in `workdir` (`certs/`, `var/`, the
    SQLite database and the `var/mail` outbox). Without `with_institution` only the API runs.
    """
    from dashtam.core.config import Settings
    from dashtam.devserver import dev_processes
    from tests.support.live import free_port, run_dashtam

    ports = {name: free_port() for name in sorted(_PORTED)}
    settings = Settings(
        environment="development",
        port=ports["api"],
        callback_port=ports["callback"],
        simulator_port=ports["simulator"],
        certs_dir=workdir / "certs",
        var_dir=workdir / "var",
    )
    processes = dev_processes(settings, credentials=(FLOW_CLIENT_ID, FLOW_CLIENT_SECRET))
    if not with_institution:
        processes = [p for p in processes if p.name == "api"]
    # The simulator first: the API checks nothing at start-up, but the callback server and
    # the first browser step need both the simulator and the API.
    order = {"simulator": 0, "api": 1, "callback": 2}
    processes.sort(key=lambda p: order.get(p.name, 3))
    base_env = {
        "ENVIRONMENT": "development",
        "LOG_FORMAT": "json",
        "CERTS_DIR": str(workdir / "certs"),
        "VAR_DIR": str(workdir / "var"),
        "EMAIL_BACKEND": "file",
    }
    urls: dict[str, str] = {}
    logs: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:
        for proc in processes:
            env = {**base_env, **proc.env}
            if proc.name in _PORTED:
                live = stack.enter_context(
                    run_dashtam(
                        proc.args[0],
                        workdir=workdir,
                        env=env,
                        port=ports[proc.name],
                        extra_args=proc.args[1:],
                    )
                )
                urls[proc.name] = live.base_url
                logs[proc.name] = live.log_file
            else:
                logs[proc.name] = stack.enter_context(_run_portless(proc.args, workdir, env))
        yield LiveSystem(workdir, workdir / "certs" / "ca.pem", urls, logs)


@contextlib.contextmanager
def _run_portless(args: tuple[str, ...], workdir: Path, env: Mapping[str, str]) -> Iterator[Path]:
    """A child without a port (e.g. a worker): started, checked alive, stopped at the end."""
    import sys

    log_file = workdir / f"{args[0]}.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "dashtam", *args],
            cwd=workdir,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(1.0)  # not a race fix: a crash on start-up shows within a second
        if process.poll() is not None:
            raise RuntimeError(
                f"`dashtam {' '.join(args)}` exited at start-up:\n"
                + log_file.read_text(errors="replace")[-4000:]
            )
        yield log_file
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
