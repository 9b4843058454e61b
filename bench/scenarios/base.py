"""What a scenario is: the load on Dashtam, the reference it is compared with, and a target.

A scenario is plain data. The runner (`bench.runner`) starts the processes, calls the setup
hooks, drives the load and compares the two measurements.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from dashtam.core.tls import client_ssl_context

if TYPE_CHECKING:  # the servers module imports nothing from here; avoid a cycle at run time
    from bench.servers import ServerProcess

#: How each side of a scenario is measured.
SideKind = Literal["http", "function", "flow"]


@dataclass(frozen=True)
class HttpRequest:
    """One request wrk sends (several in an `HttpLoad` are sent round-robin).

    Attributes:
        method: HTTP method.
        path: Path plus query string, starting with `/`.
        headers: Extra headers (wrk adds `Host` and `Content-Length` itself).
        body: Request body, sent as-is (use `json_body` to build JSON ones).
        expect_status: The status the pre-flight probe must see.
    """

    method: str = "GET"
    path: str = "/"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    expect_status: int = 200

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"request path must start with '/': {self.path!r}")
        if not self.method.isalpha() or not self.method.isupper():
            raise ValueError(f"not an HTTP method: {self.method!r}")


@dataclass(frozen=True)
class TokenChain:
    """Single-use tokens relayed from each answer to the next request (rotating tokens).

    Every wrk thread keeps a queue of unused tokens: a request takes one out, a 200 answer puts
    the token it returns (found with `next_token`) back in. So every token is sent exactly once
    and the number of live tokens stays what the setup made, however long the run. A thread
    whose queue is empty (its chains broke on errors) sends `exhausted_token`, which must fail,
    so a broken chain shows up as errors instead of silently replaying a spent token.

    Attributes:
        seeds: The first tokens; the runner gives half to the warm-up and half to the
            measurement (each half needs at least one per connection).
        next_token: Lua pattern whose first capture is the next token in a response body.
        placeholder: Replaced by the token in the request body (exactly once).
        exhausted_token: Sent when a thread has no token left (never a real token).
    """

    seeds: tuple[str, ...]
    next_token: str
    placeholder: str = "{token}"
    exhausted_token: str = "bench-chain-exhausted"

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("a TokenChain needs seed tokens")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("TokenChain seeds must be distinct (each is single use)")

    def halves(self, warmup: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """`(warm-up seeds, measurement seeds)`: disjoint, so no token is ever sent twice."""
        if not warmup:
            return (), self.seeds
        middle = len(self.seeds) // 2
        return self.seeds[:middle], self.seeds[middle:]


@dataclass(frozen=True)
class HttpLoad:
    """What wrk sends to one server.

    Attributes:
        requests: Sent round-robin (one is the common case; several tokens means several).
        probe: Send each distinct request once before the run and check its status. Turn it
            off for requests that cannot be repeated (single-use tokens).
        chain: With one request whose body holds `chain.placeholder`: send single-use tokens
            relayed from answer to request (see `TokenChain`); implies no probe.
    """

    requests: tuple[HttpRequest, ...]
    probe: bool = True
    chain: TokenChain | None = None

    def __post_init__(self) -> None:
        if not self.requests:
            raise ValueError("an HttpLoad needs at least one request")
        if self.chain is not None:
            if len(self.requests) != 1:
                raise ValueError("a chained load has exactly one request template")
            body = self.requests[0].body or ""
            if body.count(self.chain.placeholder) != 1:
                raise ValueError("a chained request's body must hold the placeholder once")
            if self.probe:
                raise ValueError("a chained load cannot be probed (its tokens are single use)")


@dataclass
class SetupContext:
    """What a setup hook gets: the running server and a place to keep shared state.

    Attributes:
        base_url: `https://127.0.0.1:<port>` of the server under test.
        ca_file: The CA that signed the server certificate.
        env: The environment the server process was started with (secrets, database URL).
        backend: `embedded` or `postgres`.
        workdir: This scenario's scratch directory under `bench/results/`.
        state: Shared between the Dashtam and the reference setup of one scenario (the
            Dashtam side runs first), e.g. to hand tokens to a reference app.
    """

    base_url: str
    ca_file: Path
    env: Mapping[str, str]
    backend: str
    workdir: Path
    state: dict[str, Any] = field(default_factory=dict)

    def client(self, timeout: float = 30.0) -> httpx.Client:
        """An HTTPS client for the server that trusts exactly the generated CA."""
        return httpx.Client(
            base_url=self.base_url, verify=client_ssl_context(self.ca_file), timeout=timeout
        )

    @property
    def database_url(self) -> str:
        """The database URL the server uses (the embedded SQLite file when none is set)."""
        return _database_url(self.env)


def _database_url(env: Mapping[str, str]) -> str:
    url = env.get("DATABASE_URL")
    if url:
        return url
    var_dir = Path(env.get("VAR_DIR", "var")).resolve()
    return f"sqlite+aiosqlite:///{(var_dir / 'dashtam.db').as_posix()}"


#: A load fixed up front, or built by a hook once the server runs (to create users, tokens…).
LoadSpec = HttpLoad | Callable[[SetupContext], HttpLoad]


@dataclass(frozen=True)
class DashtamHttp:
    """Measure the real Dashtam API process with wrk.

    Attributes:
        load: The requests, or a setup hook returning them.
        env: Extra environment for the API process (e.g. to relax a rate limit).
    """

    load: LoadSpec
    env: Mapping[str, str] = field(default_factory=dict)

    kind: SideKind = field(default="http", init=False)


@dataclass(frozen=True)
class ReferenceHttp:
    """Measure a reference app from `bench/reference/` under the same uvicorn settings.

    Attributes:
        app: `module:factory` of a FastAPI app factory.
        load: The requests, or a setup hook returning them.
        ready_path: Path that answers 200 once the app is up.
        env: Extra environment for the reference process.
    """

    app: str
    load: LoadSpec
    ready_path: str = "/health/live"
    env: Mapping[str, str] = field(default_factory=dict)

    kind: SideKind = field(default="http", init=False)


@dataclass(frozen=True)
class FunctionRef:
    """Measure a Python callable's throughput in separate processes.

    Attributes:
        factory: `module:function`; called once per process, returns the zero-argument
            callable to measure (do expensive preparation in the factory).
        processes: Worker processes; default one per usable core.
    """

    factory: str
    processes: int | None = None

    kind: SideKind = field(default="function", init=False)

    def __post_init__(self) -> None:
        if ":" not in self.factory:
            raise ValueError(f"factory must be 'module:function': {self.factory!r}")

    def process_count(self) -> int:
        """How many worker processes to run."""
        return self.processes or usable_cores()


@dataclass(frozen=True)
class Target:
    """What counts as fast enough, as ratios Dashtam / reference.

    Attributes:
        min_rps_ratio: Dashtam's throughput must be at least this share of the reference's.
        max_p99_ratio: Dashtam's p99 latency may be at most this multiple of the reference's.
        max_p50_ratio: Dashtam's p50 latency may be at most this multiple of the reference's.
    """

    min_rps_ratio: float | None = None
    max_p99_ratio: float | None = None
    max_p50_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.min_rps_ratio is None and self.max_p99_ratio is None and self.max_p50_ratio is None:
            raise ValueError("a Target needs min_rps_ratio, max_p99_ratio and/or max_p50_ratio")

    def describe(self) -> str:
        """Human-readable form, e.g. `req/s ratio >= 0.60, p99 ratio <= 4.00`."""
        parts = []
        if self.min_rps_ratio is not None:
            parts.append(f"req/s ratio >= {self.min_rps_ratio:.2f}")
        if self.max_p99_ratio is not None:
            parts.append(f"p99 ratio <= {self.max_p99_ratio:.2f}")
        if self.max_p50_ratio is not None:
            parts.append(f"p50 ratio <= {self.max_p50_ratio:.2f}")
        return ", ".join(parts)


@dataclass(frozen=True)
class FlowStep:
    """One iteration of a Python-driven flow.

    Attributes:
        run: The timed part (raise on any unexpected answer: the scenario then fails).
        before: Untimed preparation before each `run` (e.g. fetch a fresh single-use code).
    """

    run: Callable[[], Awaitable[object]]
    before: Callable[[], Awaitable[object]] | None = None


@dataclass
class FlowContext:
    """What a flow's setup gets: the scenario's stores, and a way to start live processes.

    Processes started with `start` run until the whole scenario ends, so the Dashtam side can
    start the system (simulator, API, callback server) and the reference side reuse part of it
    through `state`. Async resources go on `cleanup` (closed in the same event loop as the run).

    Attributes:
        ca_file: The CA that signed every server certificate.
        base_env: The environment a server process gets (fresh secrets, the prepared stores).
        backend: `embedded` or `postgres`.
        workdir: This scenario's scratch directory.
        state: Shared between both sides of the scenario (the Dashtam side runs first).
        processes: The scenario's process stack (used by `start`).
        cleanup: Async resources of this side (clients), closed after its measurement.
    """

    ca_file: Path
    base_env: Mapping[str, str]
    backend: str
    workdir: Path
    state: dict[str, Any]
    processes: ExitStack
    cleanup: AsyncExitStack
    start_process: Callable[..., ServerProcess]

    @property
    def database_url(self) -> str:
        """The database URL the servers use (the embedded SQLite file when none is set)."""
        return _database_url(self.base_env)

    def server_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A server's environment: the scenario's base environment plus `extra`."""
        return dict(self.base_env) | dict(extra or {})

    def start(
        self, name: str, command: list[str], *, port: int, env: Mapping[str, str], ready_path: str
    ) -> ServerProcess:
        """Start a process that lives until the scenario ends; returns once it answers 200."""
        return self.start_process(name, command, port=port, env=env, ready_path=ready_path)

    async def client(
        self, base_url: str = "", *, timeout: float = 30.0, follow_redirects: bool = False
    ) -> httpx.AsyncClient:
        """An async HTTPS client trusting exactly the generated CA, closed with the side."""
        client = httpx.AsyncClient(
            base_url=base_url,
            verify=client_ssl_context(self.ca_file),
            timeout=timeout,
            follow_redirects=follow_redirects,
        )
        return await self.cleanup.enter_async_context(client)


#: Builds one side's iteration once the processes it needs run.
FlowSetup = Callable[[FlowContext], Awaitable[FlowStep]]


@dataclass(frozen=True)
class PythonFlow:
    """Measure a multi-request flow driven by Python, one iteration after another.

    For journeys wrk cannot drive (redirects, forms, several processes): iterations run
    sequentially, each timed on its own; the rate is iterations per second of timed work.

    Attributes:
        setup: Async hook starting what it needs and returning the `FlowStep`.
        warmup_iterations: Untimed iterations first (connections, caches, JIT-free warm-up).
        min_iterations: At least this many are timed, however long `--duration` is.
        max_iterations: At most this many are timed, however short the iterations are.
    """

    setup: FlowSetup
    warmup_iterations: int = 3
    min_iterations: int = 20
    max_iterations: int = 2000

    kind: SideKind = field(default="flow", init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.min_iterations <= self.max_iterations:
            raise ValueError("need 1 <= min_iterations <= max_iterations")
        if self.warmup_iterations < 0:
            raise ValueError("warmup_iterations must not be negative")


Subject = DashtamHttp | FunctionRef | PythonFlow
#: `DashtamHttp` as a reference compares Dashtam with itself under other data (fresh stores).
Reference = ReferenceHttp | FunctionRef | PythonFlow | DashtamHttp


@dataclass(frozen=True)
class Scenario:
    """One benchmark: Dashtam's side, the reference it is compared with, and a target.

    Attributes:
        name: Identifier used with `--scenario` (lower_snake_case).
        description: One line shown in `--list` and above the result table.
        subject: What is measured on Dashtam's side.
        reference: What it is compared with; `None` reports the subject only.
        target: Pass/miss thresholds; `None` reports numbers only.
        notes: Caveats printed under the table.
        connections: Overrides `--connections` (e.g. fewer for slow endpoints).
        timeout_s: wrk's per-request timeout; slower answers count as errors.
        min_duration_s: Measure each side at least this long, whatever `--duration` says. A
            slow endpoint needs it: the window ends with up to one request in flight per
            connection, uncounted, and a 10 s window of ~10 req/s counts only ~100 requests,
            so one run to the next swings by more than the margin a target leaves.
    """

    name: str
    description: str
    subject: Subject
    reference: Reference | None = None
    target: Target | None = None
    notes: str = ""
    connections: int | None = None
    timeout_s: float = 10.0
    min_duration_s: int = 0

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name.lower() != self.name:
            raise ValueError(f"scenario name must be lower_snake_case: {self.name!r}")
        if self.target is not None and self.reference is None:
            raise ValueError(f"{self.name}: a target needs a reference to compare with")
        if self.min_duration_s < 0:
            raise ValueError(f"{self.name}: min_duration_s must not be negative")
        # A function's per-call time is not a request latency under load: no p99 ratio then.
        if (
            self.target is not None
            and (self.target.max_p99_ratio is not None or self.target.max_p50_ratio is not None)
            and self.reference is not None
            and self.subject.kind != self.reference.kind
        ):
            raise ValueError(f"{self.name}: latency targets need both sides of the same kind")

    @property
    def kind(self) -> str:
        """`http_vs_http`, `http_vs_function`, `function_vs_function`, or `<side>_only`."""
        if self.reference is None:
            return f"{self.subject.kind}_only"
        return f"{self.subject.kind}_vs_{self.reference.kind}"


def usable_cores() -> int:
    """CPU cores this process may run on (affinity-aware where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def json_body(payload: object) -> tuple[dict[str, str], str]:
    """Headers and compact body for a JSON request.

    Returns:
        `({"Content-Type": "application/json"}, body)`.
    """
    return {"Content-Type": "application/json"}, json.dumps(payload, separators=(",", ":"))


def bearer(token: str) -> dict[str, str]:
    """The `Authorization` header for a bearer token."""
    return {"Authorization": f"Bearer {token}"}
