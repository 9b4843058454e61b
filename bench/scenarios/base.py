"""What a scenario is: the load on Dashtam, the reference it is compared with, and a target.

A scenario is plain data. The runner (`bench.runner`) starts the processes, calls the setup
hooks, drives the load and compares the two measurements.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from dashtam.core.tls import client_ssl_context

#: How each side of a scenario is measured.
SideKind = Literal["http", "function"]


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
class HttpLoad:
    """What wrk sends to one server.

    Attributes:
        requests: Sent round-robin (one is the common case; several tokens means several).
        probe: Send each distinct request once before the run and check its status. Turn it
            off for requests that cannot be repeated (single-use tokens).
    """

    requests: tuple[HttpRequest, ...]
    probe: bool = True

    def __post_init__(self) -> None:
        if not self.requests:
            raise ValueError("an HttpLoad needs at least one request")


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
        url = self.env.get("DATABASE_URL")
        if url:
            return url
        var_dir = Path(self.env.get("VAR_DIR", "var")).resolve()
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
    """

    min_rps_ratio: float | None = None
    max_p99_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.min_rps_ratio is None and self.max_p99_ratio is None:
            raise ValueError("a Target needs min_rps_ratio and/or max_p99_ratio")

    def describe(self) -> str:
        """Human-readable form, e.g. `req/s ratio >= 0.60, p99 ratio <= 4.00`."""
        parts = []
        if self.min_rps_ratio is not None:
            parts.append(f"req/s ratio >= {self.min_rps_ratio:.2f}")
        if self.max_p99_ratio is not None:
            parts.append(f"p99 ratio <= {self.max_p99_ratio:.2f}")
        return ", ".join(parts)


Subject = DashtamHttp | FunctionRef
Reference = ReferenceHttp | FunctionRef


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
    """

    name: str
    description: str
    subject: Subject
    reference: Reference | None = None
    target: Target | None = None
    notes: str = ""
    connections: int | None = None
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name.lower() != self.name:
            raise ValueError(f"scenario name must be lower_snake_case: {self.name!r}")
        if self.target is not None and self.reference is None:
            raise ValueError(f"{self.name}: a target needs a reference to compare with")
        # A function's per-call time is not a request latency under load: no p99 ratio then.
        if (
            self.target is not None
            and self.target.max_p99_ratio is not None
            and self.reference is not None
            and self.subject.kind != self.reference.kind
        ):
            raise ValueError(f"{self.name}: p99 targets need both sides of the same kind")

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
